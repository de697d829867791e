// Package worker runs a service's background loops (outbox relays, consumers,
// sweepers) and stops them together. Each loop gets a context that is cancelled on
// Stop, not when the context that started it ends, so a module's lifetime is decided
// by the module manager alone.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Group is a set of background loops.
type Group struct {
	logger *slog.Logger
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewGroup returns an empty group logging through logger.
func NewGroup(logger *slog.Logger) *Group { return &Group{logger: logger} }

// Go starts fn. A loop that returns an error other than cancellation is logged; it is
// not restarted (loops retry internally).
func (g *Group) Go(ctx context.Context, name string, fn func(context.Context) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancel == nil {
		g.ctx, g.cancel = context.WithCancel(context.WithoutCancel(ctx))
	}
	loopCtx := g.ctx
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(loopCtx); err != nil && !errors.Is(err, context.Canceled) {
			g.logger.Error("background loop stopped", "loop", name, "err", err)
		}
	}()
}

// Stop cancels every loop and waits for them, or for ctx.
func (g *Group) Stop(ctx context.Context) error {
	g.mu.Lock()
	cancel := g.cancel
	g.cancel = nil
	g.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("background loops did not stop: %w", ctx.Err())
	}
}
