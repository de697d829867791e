package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/manushya-ai/manushya/cmd/manushya/app"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/config"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

const testPepper = "app-test-pepper-app-test-pepper-0123456789"

// stack is a running manushya process (or several) for one test.
type stack struct {
	db      *pgtest.DB
	natsURL string
}

func newStack(t testing.TB) *stack {
	t.Helper()
	db := pgtest.New(t, app.AllMigrations()...)
	nats, err := bus.StartEmbedded(t.TempDir(), -1)
	require.NoError(t, err)
	t.Cleanup(nats.Shutdown)
	return &stack{db: db, natsURL: nats.URL()}
}

// start runs one process with the given targets and extra settings, waiting until
// it serves; it is stopped at the end of the test.
func (s *stack) start(t testing.TB, targets string, extra ...string) *app.App {
	t.Helper()
	env := []string{
		"MANUSHYA_TARGET=" + targets,
		"MANUSHYA_DATABASE_URL=" + s.db.AppURL,
		"MANUSHYA_NATS_URL=" + s.natsURL,
		"MANUSHYA_GRPC_ADDR=127.0.0.1:0",
		"MANUSHYA_HTTP_ADDR=127.0.0.1:0",
		"MANUSHYA_AUTH_API_KEY_PEPPER=" + testPepper,
		"MANUSHYA_HTTP_SHUTDOWN_TIMEOUT=5s",
	}
	cfg, err := config.Load(nil, append(env, extra...))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate(config.ModeServe))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("MANUSHYA_TEST_LOG") != "" {
		logger = slog.Default()
	}
	a := app.New(cfg, config.ModeServe, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("manushya %s did not start: %v", targets, err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("manushya %s did not start within 30s", targets)
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return a
}

func target(t testing.TB, grpcAddr, httpAddr string) apitest.Target {
	t.Helper()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return apitest.Target{
		GRPC: conn, RESTBase: "http://" + httpAddr,
		HTTPClient: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
}

func unmarshalProtoNames(b []byte, m proto.Message) error {
	return protojson.Unmarshal(b, m)
}
