package webhooks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/auth"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

func TestAuditChainDetectsTampering(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Metering sums change nothing and are not audited (the chain below holds
	// exactly the five changes).
	b.publish(t, tenantA, "usage.recorded", map[string]any{"type": "api.request", "quantity": 3})
	for range 5 {
		b.publish(t, tenantA, "identity.updated", map[string]any{"role": "user", "api_key": "mk_should_not_leak"})
	}
	b.publish(t, tenantB, "identity.created", map[string]any{})
	audit := b.audit(t)
	require.Eventually(t, func() bool {
		l, err := audit.ListAuditEntries(as(tenantA), &eventsv1.ListAuditEntriesRequest{})
		return err == nil && len(l.GetEntries()) == 5
	}, 10*time.Second, 20*time.Millisecond)

	l, err := audit.ListAuditEntries(as(tenantA), &eventsv1.ListAuditEntriesRequest{PageSize: 2})
	require.NoError(t, err)
	require.EqualValues(t, 5, l.GetEntries()[0].GetSequence(), "newest first")
	require.Equal(t, "[redacted]", l.GetEntries()[0].GetAfter().GetFields()["api_key"].GetStringValue())
	require.NotEmpty(t, l.GetNextPageToken())

	ok, err := audit.VerifyAuditChain(as(tenantA), &eventsv1.VerifyAuditChainRequest{})
	require.NoError(t, err)
	require.True(t, ok.GetOk())
	require.EqualValues(t, 5, ok.GetEntriesChecked())

	// The export streams every entry, oldest first.
	stream, err := audit.ExportAuditEntries(as(tenantA), &eventsv1.ExportAuditEntriesRequest{})
	require.NoError(t, err)
	var seqs []int64
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		seqs = append(seqs, m.GetEntry().GetSequence())
	}
	require.Equal(t, []int64{1, 2, 3, 4, 5}, seqs)

	// The application role cannot rewrite history.
	err = postgres.InTenantTx(context.Background(), b.db.Pool, tenantA, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), "UPDATE webhooks.audit_entries SET action = 'x'")
		return err
	})
	require.ErrorContains(t, err, "append-only")

	// A superuser can, by switching triggers off; verify names the row.
	conn, err := pgx.Connect(context.Background(), b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	_, err = conn.Exec(context.Background(), "SET session_replication_role = replica")
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), "UPDATE webhooks.audit_entries SET resource_id = 'someone-else' WHERE tenant_id = $1 AND sequence = 3", tenantA)
	require.NoError(t, err)
	bad, err := audit.VerifyAuditChain(as(tenantA), &eventsv1.VerifyAuditChainRequest{})
	require.NoError(t, err)
	require.False(t, bad.GetOk())
	require.EqualValues(t, 3, bad.GetFirstBrokenSequence())
	require.NotEmpty(t, bad.GetFirstBrokenId())
	require.Equal(t, eventsv1.AuditChainBreak_AUDIT_CHAIN_BREAK_HASH_MISMATCH, bad.GetBreakReason())

	// Tenant B's chain is its own and intact.
	okB, err := audit.VerifyAuditChain(as(tenantB), &eventsv1.VerifyAuditChainRequest{})
	require.NoError(t, err)
	require.True(t, okB.GetOk())

	// Deleting a middle row is a gap.
	_, err = conn.Exec(context.Background(), "DELETE FROM webhooks.audit_entries WHERE tenant_id = $1 AND sequence = 2", tenantA)
	require.NoError(t, err)
	gap, err := audit.VerifyAuditChain(as(tenantA), &eventsv1.VerifyAuditChainRequest{})
	require.NoError(t, err)
	require.False(t, gap.GetOk())
	require.EqualValues(t, 3, gap.GetFirstBrokenSequence())
	require.Equal(t, eventsv1.AuditChainBreak_AUDIT_CHAIN_BREAK_SEQUENCE_GAP, gap.GetBreakReason())
}

func (b *testBundle) audit(t *testing.T) eventsv1.AuditServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return eventsv1.NewAuditServiceClient(conn)
}

func TestAuditInterceptorRecordsMutatingRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The path every process uses: interceptor, bus sink, audit stream, writer.
	sink := audit.NewBusSink(audit.BusSinkOptions{Logger: slog.New(slog.DiscardHandler)})
	_, err := b.bus.EnsureAuditStream(t.Context())
	require.NoError(t, err)
	sink.Start(b.bus)
	t.Cleanup(func() { _ = sink.Close(context.Background()) })
	icpt := audit.UnaryServerInterceptor(sink)
	ctx := auth.WithPrincipal(context.Background(), &auth.Principal{TenantID: tenantA, IdentityID: "id-1", Kind: auth.KindUser, Roles: []string{"admin"}})
	ctx = telemetry.WithRequestID(ctx, "req-rotate")
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("x-forwarded-for", "203.0.113.7", "grpcgateway-user-agent", "curl/8"))
	req := &webhooksv1.RotateWebhookSecretRequest{Id: "0193aaaa-0000-7000-8000-0000000000ff"}
	resp := &webhooksv1.RotateWebhookSecretResponse{Webhook: &webhooksv1.Webhook{Secret: "whsec_c2VjcmV0"}}
	_, err = icpt(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/manushya.webhooks.v1.WebhookService/RotateWebhookSecret"},
		func(context.Context, any) (any, error) { return resp, nil })
	require.NoError(t, err)
	_, err = icpt(ctx, &webhooksv1.GetWebhookRequest{}, &grpc.UnaryServerInfo{FullMethod: "/manushya.webhooks.v1.WebhookService/GetWebhook"},
		func(context.Context, any) (any, error) { return &webhooksv1.GetWebhookResponse{}, nil })
	require.NoError(t, err)

	client := b.audit(t)
	var entries []*eventsv1.AuditEntry
	require.Eventually(t, func() bool {
		l, err := client.ListAuditEntries(as(tenantA), &eventsv1.ListAuditEntriesRequest{ResourceType: "webhooks"})
		entries = l.GetEntries()
		return err == nil && len(entries) == 1
	}, 10*time.Second, 20*time.Millisecond)
	e := entries[0]
	require.Equal(t, "/manushya.webhooks.v1.WebhookService/RotateWebhookSecret", e.GetAction())
	require.Equal(t, req.GetId(), e.GetResourceId())
	require.Equal(t, "id-1", e.GetActor().GetIdentityId())
	require.Equal(t, eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_USER, e.GetActor().GetKind())
	require.Equal(t, "req-rotate", e.GetRequestId())
	require.Equal(t, "203.0.113.7", e.GetClientIp())
	require.Equal(t, "curl/8", e.GetUserAgent())
	require.Equal(t, "[redacted]", e.GetAfter().GetFields()["webhook"].GetStructValue().GetFields()["secret"].GetStringValue())
}

// TestAuditRecordRedeliveredOnce publishes one record three times, twice with
// distinct message ids so the stream's duplicate window does not catch it (as
// after a lost ack past the window, or a redelivery): the log holds it once and
// the chain verifies.
func TestAuditRecordRedeliveredOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.bus.EnsureAuditStream(t.Context())
	require.NoError(t, err)
	rec := audit.Record{
		ID: uuid.Must(uuid.NewV7()).String(), TenantID: tenantA, Action: "auth.login", ResourceType: "auth",
		Result: audit.ResultDenied, ClientIP: "198.51.100.1", Time: time.Now().UTC(),
	}
	other := rec
	other.ID, other.Result = uuid.Must(uuid.NewV7()).String(), audit.ResultSuccess
	for i, r := range []audit.Record{rec, rec, other, rec} {
		data, err := json.Marshal(r)
		require.NoError(t, err)
		_, err = b.bus.JS.Publish(t.Context(), b.bus.AuditSubjectOf(tenantA), data, jetstream.WithMsgID(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	// Not a record: terminated, not retried forever, and the others still land.
	_, err = b.bus.JS.Publish(t.Context(), b.bus.AuditSubjectOf(tenantA), []byte(`{"id":"x"}`))
	require.NoError(t, err)

	client := b.audit(t)
	require.Eventually(t, func() bool {
		l, err := client.ListAuditEntries(as(tenantA), &eventsv1.ListAuditEntriesRequest{})
		return err == nil && len(l.GetEntries()) == 2
	}, 10*time.Second, 20*time.Millisecond)
	// Give a late duplicate every chance to show up before counting again.
	time.Sleep(300 * time.Millisecond)
	l, err := client.ListAuditEntries(as(tenantA), &eventsv1.ListAuditEntriesRequest{})
	require.NoError(t, err)
	require.Len(t, l.GetEntries(), 2)
	ids := []string{l.GetEntries()[0].GetId(), l.GetEntries()[1].GetId()}
	require.ElementsMatch(t, []string{rec.ID, other.ID}, ids)
	v, err := client.VerifyAuditChain(as(tenantA), &eventsv1.VerifyAuditChainRequest{})
	require.NoError(t, err)
	require.True(t, v.GetOk(), "%v", v)
	require.EqualValues(t, 2, v.GetEntriesChecked())
}
