package webhooks_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/keyring/keyringtest"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/pkg/telemetry"
	"github.com/manushya-ai/manushya/services/webhooks"
)

// A receiver that fails shows on /metrics: failed attempts by outcome, their
// latency, and the deliveries that ran out of retries, under the names the
// "webhooks failing" alert and the dashboard use.
func TestFailingDeliveriesShowOnMetrics(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, webhooks.Migrations(), keyring.Migrations())
	ns, err := bus.StartEmbedded(t.TempDir(), -1)
	require.NoError(t, err)
	t.Cleanup(ns.Shutdown)
	b, err := bus.Connect(t.Context(), ns.URL(), t.Name())
	require.NoError(t, err)
	t.Cleanup(b.Close)
	_, err = b.EnsureStream(t.Context())
	require.NoError(t, err)
	pool, err := postgres.Connect(t.Context(), db.AppURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	kr := keyringtest.New(t, pool, keyringtest.Tenants(uuid.MustParse(tenantA)))
	reg := telemetry.NewRegistry()
	mod, err := webhooks.New(webhooks.Config{
		AllowedAddresses: []string{"127.0.0.0/8"},
		RetrySchedule:    []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond},
		PollInterval:     20 * time.Millisecond,
		Timeout:          5 * time.Second,
	}, webhooks.Deps{Pool: pool, Bus: b, Logger: slog.New(slog.DiscardHandler), Keyring: kr, Registerer: reg})
	require.NoError(t, err)
	srv, err := grpcserver.New(grpcserver.Options{Logger: slog.New(slog.DiscardHandler), Authenticator: auth.AuthenticatorFunc(authenticate)})
	require.NoError(t, err)
	mod.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, mod.Start(context.Background()))
	t.Cleanup(func() { _ = mod.Stop(context.Background()) })
	bundle := &testBundle{bus: b, hooks: webhooksv1.NewWebhookServiceClient(conn)}

	rc := newReceiver(t, func(*http.Request, int) int { return http.StatusInternalServerError })
	bundle.createWebhook(t, tenantA, rc.URL, "memory.*")
	bundle.publish(t, tenantA, "memory.created", map[string]any{"text": "x"})

	metrics := httptest.NewServer(telemetry.MetricsHandler(reg))
	t.Cleanup(metrics.Close)
	scrape := func() string {
		resp, err := http.Get(metrics.URL)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(body)
	}
	// Three attempts (the retry schedule's length), then the delivery is dead.
	require.Eventually(t, func() bool {
		return strings.Contains(scrape(), `manushya_webhook_deliveries_total{outcome="dead"} 1`)
	}, 15*time.Second, 20*time.Millisecond)
	out := scrape()
	require.Contains(t, out, `manushya_webhook_attempts_total{outcome="http_error"} 3`)
	require.Contains(t, out, `manushya_webhook_attempts_total{outcome="succeeded"} 0`)
	require.Contains(t, out, `manushya_webhook_attempt_duration_seconds_count{outcome="http_error"} 3`)
	require.Contains(t, out, `manushya_webhook_deliveries_total{outcome="succeeded"} 0`)
}
