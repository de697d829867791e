package audit_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/policyengine"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

const tenant = "0193aaaa-0000-7000-8000-00000000000a"

// collector is a Sink that keeps what it is given.
type collector struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (c *collector) Record(_ context.Context, r audit.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r)
}

func (c *collector) all() []audit.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]audit.Record(nil), c.recs...)
}

func requestCtx() context.Context {
	ctx := auth.WithPrincipal(context.Background(), &auth.Principal{
		TenantID: tenant, IdentityID: "0193aaaa-0000-7000-8000-0000000000a1", Kind: auth.KindAgent, APIKeyID: "key-1",
	})
	ctx = telemetry.WithRequestID(ctx, "req-1")
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 5555}})
	return metadata.NewIncomingContext(ctx, metadata.Pairs("user-agent", "grpc-go/1", "grpcgateway-user-agent", "sdk/2"))
}

func TestInterceptorRecordsMutatingCalls(t *testing.T) {
	t.Parallel()
	c := &collector{}
	icpt := audit.UnaryServerInterceptor(c)
	ok := func(resp any) grpc.UnaryHandler { return func(context.Context, any) (any, error) { return resp, nil } }
	call := func(ctx context.Context, method string, req any, h grpc.UnaryHandler) error {
		_, err := icpt(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, h)
		return err
	}

	req := &identityv1.SetPasswordRequest{IdentityId: "i-2", NewPassword: "hunter2-hunter2"}
	require.NoError(t, call(requestCtx(), "/manushya.identity.v1.AuthService/SetPassword", req, ok(&identityv1.SetPasswordResponse{})))
	// Reads, public calls and health checks are not recorded.
	require.NoError(t, call(requestCtx(), "/manushya.identity.v1.IdentityService/GetIdentity", &identityv1.GetIdentityRequest{Id: "x"}, ok(nil)))
	require.NoError(t, call(context.Background(), "/manushya.identity.v1.AuthService/Login", &identityv1.LoginRequest{}, ok(nil)))
	require.NoError(t, call(requestCtx(), "/grpc.health.v1.Health/Check", nil, ok(nil)))
	// VerifyMfa reads like a query but turns MFA on.
	require.NoError(t, call(requestCtx(), "/manushya.identity.v1.AuthService/VerifyMfa", &identityv1.VerifyMfaRequest{Token: "123456"}, ok(&identityv1.VerifyMfaResponse{})))
	denied := apierr.PermissionDenied("identity.delete denied: no policy allows it")
	err := call(requestCtx(), "/manushya.identity.v1.IdentityService/DeleteIdentity", &identityv1.DeleteIdentityRequest{Id: "victim"},
		func(context.Context, any) (any, error) { return nil, denied })
	require.ErrorIs(t, err, denied)

	recs := c.all()
	require.Len(t, recs, 3)
	r := recs[0]
	require.NoError(t, r.Validate())
	require.Equal(t, tenant, r.TenantID)
	require.Equal(t, "/manushya.identity.v1.AuthService/SetPassword", r.Action)
	require.Equal(t, "identity", r.ResourceType)
	require.Equal(t, audit.Actor{IdentityID: "0193aaaa-0000-7000-8000-0000000000a1", Kind: auth.KindAgent, APIKeyID: "key-1"}, r.Actor)
	require.Equal(t, "req-1", r.RequestID)
	require.Equal(t, "192.0.2.9", r.ClientIP)
	require.Equal(t, "sdk/2", r.UserAgent, "the gateway's forwarded user agent wins")
	require.Equal(t, audit.ResultSuccess, r.Result)
	require.NotContains(t, string(r.Before), "hunter2")
	require.JSONEq(t, `{"identity_id":"i-2","new_password":"[redacted]"}`, string(r.Before))

	require.Equal(t, "/manushya.identity.v1.AuthService/VerifyMfa", recs[1].Action)
	require.NotContains(t, string(recs[1].Before), "123456")

	d := recs[2]
	require.Equal(t, audit.ResultDenied, d.Result)
	require.Equal(t, "victim", d.ResourceID)
	require.NotZero(t, d.ErrorReason)
	require.Empty(t, d.After)
}

// TestHandlerNamesKeysToRedact: a handler that knows some keys are sensitive
// (a tenant's sensitive claims) has them redacted in its record's request and
// response, at any depth; other requests are unaffected.
func TestHandlerNamesKeysToRedact(t *testing.T) {
	t.Parallel()
	c := &collector{}
	icpt := audit.UnaryServerInterceptor(c)
	claims, err := structpb.NewStruct(map[string]any{"ssn": "123-45-6789", "team": "red", "nested": map[string]any{"ssn": "x"}})
	require.NoError(t, err)
	req := &identityv1.CreateIdentityRequest{ExternalId: "p", Claims: claims}
	resp := &identityv1.CreateIdentityResponse{Identity: &identityv1.Identity{Id: "i", Claims: claims}}
	_, err = icpt(requestCtx(), req, &grpc.UnaryServerInfo{FullMethod: "/manushya.identity.v1.IdentityService/CreateIdentity"},
		func(ctx context.Context, _ any) (any, error) {
			audit.RedactKeys(ctx, "ssn")
			return resp, nil
		})
	require.NoError(t, err)
	_, err = icpt(requestCtx(), req, &grpc.UnaryServerInfo{FullMethod: "/manushya.identity.v1.IdentityService/CreateIdentity"},
		func(context.Context, any) (any, error) { return resp, nil })
	require.NoError(t, err)
	audit.RedactKeys(context.Background(), "ssn") // outside a request: nothing to do

	recs := c.all()
	require.Len(t, recs, 2)
	require.NotContains(t, string(recs[0].Before)+string(recs[0].After), "123-45-6789")
	require.NotContains(t, string(recs[0].Before), `"x"`)
	require.Contains(t, string(recs[0].Before), `"team":"red"`)
	require.Contains(t, string(recs[0].After), `"ssn":"[redacted]"`)
	require.Contains(t, string(recs[1].Before), "123-45-6789", "only the request that asked")
}

func TestRecordValidate(t *testing.T) {
	t.Parallel()
	good := audit.Record{ID: uuid.NewString(), TenantID: tenant, Action: "auth.login", Result: audit.ResultDenied, Time: time.Now()}
	require.NoError(t, good.Validate())
	for name, mutate := range map[string]func(*audit.Record){
		"id":     func(r *audit.Record) { r.ID = "nope" },
		"tenant": func(r *audit.Record) { r.TenantID = "0193AAAA-0000-7000-8000-00000000000A" },
		"action": func(r *audit.Record) { r.Action = "" },
		"result": func(r *audit.Record) { r.Result = "maybe" },
		"after":  func(r *audit.Record) { r.After = json.RawMessage(`{`) },
		"time":   func(r *audit.Record) { r.Time = time.Time{} },
	} {
		r := good
		mutate(&r)
		require.ErrorIs(t, r.Validate(), audit.ErrInvalidRecord, name)
	}
}

func TestDecisionRecorder(t *testing.T) {
	t.Parallel()
	c := &collector{}
	hook := audit.DecisionRecorder(c)
	in := policyengine.Input{
		Principal: policyengine.Principal{IdentityID: "i-1", TenantID: tenant, Kind: "user", Roles: []string{"readonly"}},
		Action:    "delete", Resource: policyengine.Resource{Type: "memory", ID: "m-1", OwnerID: "i-9"},
	}
	hook(requestCtx(), tenant, in, policyengine.Decision{Allow: false, Decisive: &policyengine.Evaluation{
		PolicyID: "p-1", Name: "no-deletes", Effect: policyengine.Deny, Priority: 10, Reason: "deletes are off",
	}})
	recs := c.all()
	require.Len(t, recs, 1)
	r := recs[0]
	require.NoError(t, r.Validate())
	require.Equal(t, "authz.memory.delete", r.Action)
	require.Equal(t, audit.ResultDenied, r.Result)
	require.Equal(t, "m-1", r.ResourceID)
	var detail map[string]any
	require.NoError(t, json.Unmarshal(r.After, &detail))
	require.Equal(t, "deletes are off", detail["reason"])
	require.Equal(t, "no-deletes", detail["policy"].(map[string]any)["name"])
	require.Nil(t, audit.DecisionRecorder(nil))
}

func TestBusSinkDropsPastItsBuffer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := audit.NewBusSink(audit.BusSinkOptions{Logger: slog.New(slog.DiscardHandler), Registerer: reg, Buffer: 2})
	for range 5 {
		s.Record(t.Context(), audit.Record{TenantID: tenant, Action: "x.y"})
	}
	n, err := testutil.GatherAndCount(reg, "manushya_audit_records_dropped_total")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.InDelta(t, 3, gauge(t, reg, "manushya_audit_records_dropped_total"), 0)
	require.InDelta(t, 2, gauge(t, reg, "manushya_audit_buffer_records"), 0)
	require.NoError(t, s.Close(t.Context()))
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestBusSinkSurvivesNATSRestart records while NATS is up, down and back: every
// record reaches the audit stream once.
func TestBusSinkSurvivesNATSRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := bus.StartEmbedded(dir, -1)
	require.NoError(t, err)
	port := srv.Port()
	b, err := bus.Connect(t.Context(), srv.URL(), t.Name(), bus.WithNATSOptions(nats.ReconnectWait(50*time.Millisecond)))
	require.NoError(t, err)
	t.Cleanup(b.Close)
	st, err := b.EnsureAuditStream(t.Context())
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	s := audit.NewBusSink(audit.BusSinkOptions{
		Logger: slog.New(slog.DiscardHandler), Registerer: reg, Batch: 16, AckTimeout: 300 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	s.Start(b)
	record := func(n int) {
		for range n {
			s.Record(t.Context(), audit.Record{TenantID: tenant, Action: "memory.create", Result: audit.ResultSuccess})
		}
	}
	record(50)
	require.Eventually(t, func() bool { return gauge(t, reg, "manushya_audit_records_published_total") == 50 }, 10*time.Second, 10*time.Millisecond)

	srv.Shutdown()
	record(50)
	srv, err = bus.StartEmbedded(dir, port)
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	record(50)
	require.NoError(t, s.Close(t.Context()))
	require.Zero(t, gauge(t, reg, "manushya_audit_records_dropped_total"))

	// Every record once, by id (retries reuse the id; the stream deduplicates).
	cons, err := st.CreateOrUpdateConsumer(t.Context(), jetstream.ConsumerConfig{Durable: "check", AckPolicy: jetstream.AckNonePolicy})
	require.NoError(t, err)
	ids := map[string]bool{}
	for len(ids) < 150 {
		batch, err := cons.Fetch(150, jetstream.FetchMaxWait(2*time.Second))
		require.NoError(t, err)
		got := 0
		for m := range batch.Messages() {
			var r audit.Record
			require.NoError(t, json.Unmarshal(m.Data(), &r))
			require.False(t, ids[r.ID], "record %s twice", r.ID)
			ids[r.ID] = true
			got++
		}
		if got == 0 {
			break
		}
	}
	require.Len(t, ids, 150)
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(150), info.State.Msgs)
}

func TestMutatingJudgesByMethodName(t *testing.T) {
	for method, want := range map[string]bool{
		"/manushya.identity.v1.IdentityService/CreateIdentity":         true,
		"/manushya.identity.v1.AuthService/VerifyMfa":                  true,
		"/manushya.identity.v1.IdentityService/GetIdentity":            false,
		"/manushya.memory.v1.MemoryService/SearchMemories":             false,
		"/manushya.embedding.v1.EmbeddingService/Embed":                false,
		"/manushya.identity.v1.CredentialService/IntrospectCredential": false,
		"/grpc.health.v1.Health/Check":                                 false,
	} {
		require.Equal(t, want, audit.Mutating(method), method)
	}
}
