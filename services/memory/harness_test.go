package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/keyring/keyringtest"
	embeddingv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
)

// natsURL is the embedded NATS server shared by the package's tests; each test
// gets its own stream (over its own tenants' subjects), so consumers never see
// another test's events.
var natsURL string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "memory-nats-")
	if err != nil {
		panic(err)
	}
	srv, err := bus.StartEmbedded(dir, -1)
	if err != nil {
		panic(err)
	}
	natsURL = srv.URL()
	code := m.Run()
	srv.Shutdown()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// testEmbedder is a real EmbeddingService backed by the hashing embedder, with a
// switch that makes it fail (the provider is down) and one that scales its
// vectors (a provider whose vectors are not unit length).
type testEmbedder struct {
	embeddingv1.UnimplementedEmbeddingServiceServer
	e    *hashing.Embedder
	fail atomic.Bool
	// fallback: the default provider is down and a fallback answers, with
	// another model's name (testFallbackModel).
	fallback atomic.Bool
	// listDown: ListModels fails (the default model cannot be learnt).
	listDown atomic.Bool
	scale    atomic.Uint32 // math.Float32bits of the factor; 0 leaves vectors as they are
	calls    atomic.Int64
}

func (t *testEmbedder) Embed(_ context.Context, req *embeddingv1.EmbedRequest) (*embeddingv1.EmbedResponse, error) {
	t.calls.Add(1)
	if t.fail.Load() {
		return nil, status.Error(codes.Unavailable, "provider down")
	}
	resp := &embeddingv1.EmbedResponse{Model: t.e.Model(), Dimensions: int32(t.e.Dimensions()), Provider: "hashing"}
	if t.fallback.Load() {
		resp.Model, resp.Provider = testFallbackModel, "fallback"
	}
	for _, v := range t.e.Embed(req.GetTexts()) {
		if f := math.Float32frombits(t.scale.Load()); f != 0 {
			for i := range v {
				v[i] *= f
			}
		}
		resp.Embeddings = append(resp.Embeddings, &embeddingv1.Embedding{Values: v})
	}
	return resp, nil
}

// testFallbackModel is the model the test embedder names while its default
// provider is "down" (testEmbedder.fallback).
const testFallbackModel = "fallback-hashing-384"

func (t *testEmbedder) ListModels(context.Context, *embeddingv1.ListModelsRequest) (*embeddingv1.ListModelsResponse, error) {
	if t.listDown.Load() {
		return nil, status.Error(codes.Unavailable, "down")
	}
	return &embeddingv1.ListModelsResponse{DefaultModel: t.e.Model()}, nil
}

type testBundle struct {
	db       *pgtest.DB
	admin    *pgxpool.Pool // superuser: sees every tenant (RLS is bypassed)
	mod      *Module
	client   memoryv1.MemoryServiceClient
	embedder *testEmbedder
	keys     *keyring.Keyring // nil with setupOpts.noKeyring
	tenantA  uuid.UUID
	tenantB  uuid.UUID
	// Identities of tenant A.
	adminA, user1, user2, agent1 uuid.UUID
	adminB                       uuid.UUID
}

type setupOpts struct {
	noWorkers bool
	noKeyring bool // a process built without the keyring
	cfg       Config
}

func setup(t testing.TB, opts ...setupOpts) *testBundle {
	t.Helper()
	var o setupOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx := context.Background()
	b := &testBundle{
		db: pgtest.New(t, Migrations(), keyring.Migrations()), embedder: &testEmbedder{e: hashing.New(384)},
		tenantA: uuid.New(), tenantB: uuid.New(),
		adminA: uuid.New(), user1: uuid.New(), user2: uuid.New(), agent1: uuid.New(), adminB: uuid.New(),
	}
	admin, err := pgxpool.New(ctx, b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	b.admin = admin

	// The embedding service, served over gRPC like the real one.
	// With the message limit the real one has by default (http.max_body_bytes
	// of 1 MiB plus 64 KiB).
	esrv := grpc.NewServer(grpc.MaxRecvMsgSize(1<<20 + 64<<10))
	embeddingv1.RegisterEmbeddingServiceServer(esrv, b.embedder)
	elis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = esrv.Serve(elis) }()
	t.Cleanup(esrv.Stop)
	econn, err := grpc.NewClient(elis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = econn.Close() })

	deps := Deps{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})), Pool: b.db.Pool,
		Dial: func(name string) (grpc.ClientConnInterface, error) {
			if name != "embedding" {
				return nil, fmt.Errorf("unknown service %q", name)
			}
			return econn, nil
		},
	}
	if !o.noKeyring {
		b.keys = keyringtest.New(t, b.db.Pool, keyringtest.Tenants(b.tenantA, b.tenantB))
		deps.Keyring = b.keys
	}
	if !o.noWorkers {
		bs, err := bus.Connect(ctx, natsURL, "memory-test", bus.WithStream(bus.StreamOptions{
			Name:     "T" + uuid.NewString()[:8],
			Subjects: []string{bus.TenantFilter(b.tenantA.String()), bus.TenantFilter(b.tenantB.String())},
			Storage:  jetstream.MemoryStorage,
		}))
		require.NoError(t, err)
		t.Cleanup(bs.Close)
		_, err = bs.EnsureStream(ctx)
		require.NoError(t, err)
		deps.Bus = bs
	}
	cfg := o.cfg
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Hour // tests run the sweepers by hand
	}
	if cfg.IndexInterval == 0 {
		cfg.IndexInterval = time.Hour // and the indexer
	}
	cfg.DisableWorkers = o.noWorkers
	mod, err := New(cfg, deps)
	require.NoError(t, err)
	b.mod = mod

	keys := map[string]*auth.Principal{
		"admin-a": {TenantID: b.tenantA.String(), IdentityID: b.adminA.String(), Kind: auth.KindUser, Roles: []string{auth.RoleAdmin}},
		"user1":   {TenantID: b.tenantA.String(), IdentityID: b.user1.String(), Kind: auth.KindUser, Roles: []string{auth.RoleUser}},
		"user2":   {TenantID: b.tenantA.String(), IdentityID: b.user2.String(), Kind: auth.KindUser, Roles: []string{auth.RoleUser}},
		"agent1":  {TenantID: b.tenantA.String(), IdentityID: b.agent1.String(), Kind: auth.KindAgent, Roles: []string{auth.RoleAgent}},
		"admin-b": {TenantID: b.tenantB.String(), IdentityID: b.adminB.String(), Kind: auth.KindUser, Roles: []string{auth.RoleAdmin}},
	}
	srv, err := grpcserver.New(grpcserver.Options{
		Logger: deps.Logger,
		Authenticator: auth.AuthenticatorFunc(func(_ context.Context, cred auth.Credential) (*auth.Principal, error) {
			if p, ok := keys[cred.Value]; ok {
				return p, nil
			}
			return nil, errors.New("unknown key")
		}),
	})
	require.NoError(t, err)
	mod.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	b.client = memoryv1.NewMemoryServiceClient(conn)

	require.NoError(t, mod.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = mod.Stop(sctx)
	})
	return b
}

func as(key string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key)
}

func requireCode(t testing.TB, err error, code codes.Code) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, status.Code(err), err.Error())
}

// requireField asserts an InvalidArgument naming field.
func requireField(t testing.TB, err error, field string) {
	t.Helper()
	requireCode(t, err, codes.InvalidArgument)
	require.Contains(t, err.Error(), field)
	_ = apierr.ReasonOf(err)
}

// waitReady creates a memory and waits (server-side, bounded) until it is READY.
func (b *testBundle) create(t testing.TB, key string, req *memoryv1.CreateMemoryRequest) *memoryv1.Memory {
	t.Helper()
	resp, err := b.client.CreateMemory(as(key), req)
	require.NoError(t, err)
	return resp.GetMemory()
}
