package worker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStopCancelsEveryLoop(t *testing.T) {
	t.Parallel()
	g := NewGroup(slog.Default())
	startCtx, cancelStart := context.WithCancel(context.Background())
	var stopped atomic.Int32
	for range 3 {
		g.Go(startCtx, "loop", func(ctx context.Context) error {
			<-ctx.Done()
			stopped.Add(1)
			return ctx.Err()
		})
	}
	// The context that started the loops ending does not stop them: Stop does.
	cancelStart()
	require.Never(t, func() bool { return stopped.Load() > 0 }, 50*time.Millisecond, 5*time.Millisecond)
	require.NoError(t, g.Stop(context.Background()))
	require.EqualValues(t, 3, stopped.Load())
}

func TestStopReportsStuckLoops(t *testing.T) {
	t.Parallel()
	g := NewGroup(slog.Default())
	release := make(chan struct{})
	g.Go(context.Background(), "stuck", func(context.Context) error { <-release; return nil })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Error(t, g.Stop(ctx))
	close(release)
}
