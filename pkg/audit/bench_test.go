package audit_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/bus"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// BenchmarkInterceptor is what the audit interceptor adds to one mutating call
// (record built, bodies marshalled and redacted, handed to the sink): with a sink
// that discards, and with the bus sink publishing to an embedded NATS.
func BenchmarkInterceptor(b *testing.B) {
	req := &identityv1.CreateIdentityRequest{ExternalId: "user@example.com", Role: "user"}
	resp := &identityv1.CreateIdentityResponse{Identity: &identityv1.Identity{Id: "0193aaaa-0000-7000-8000-0000000000a1", ExternalId: "user@example.com"}}
	info := &grpc.UnaryServerInfo{FullMethod: "/manushya.identity.v1.IdentityService/CreateIdentity"}
	handler := func(context.Context, any) (any, error) { return resp, nil }
	run := func(b *testing.B, sink audit.Sink) {
		icpt := audit.UnaryServerInterceptor(sink)
		ctx := requestCtx()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := icpt(ctx, req, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("discard", func(b *testing.B) {
		run(b, audit.SinkFunc(func(context.Context, audit.Record) {}))
	})
	b.Run("bus", func(b *testing.B) {
		srv, err := bus.StartEmbedded(b.TempDir(), -1)
		require.NoError(b, err)
		b.Cleanup(srv.Shutdown)
		bb, err := bus.Connect(b.Context(), srv.URL(), b.Name())
		require.NoError(b, err)
		b.Cleanup(bb.Close)
		_, err = bb.EnsureAuditStream(b.Context())
		require.NoError(b, err)
		sink := audit.NewBusSink(audit.BusSinkOptions{Logger: slog.New(slog.DiscardHandler), Buffer: 1 << 20})
		sink.Start(bb)
		run(b, sink)
		b.StopTimer()
		require.NoError(b, sink.Close(context.Background()))
	})
}
