package identity_test

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/identity"
)

const pepper = "test-pepper-test-pepper-test-pepper-0123"

type testBundle struct {
	db        *pgtest.DB
	conn      *grpc.ClientConn
	svc       *identity.Service
	tenants   identityv1.TenantServiceClient
	ids       identityv1.IdentityServiceClient
	operator  string // the bootstrap key: admin of tenant A and platform operator
	tenantA   string
	adminKeyB string
	tenantB   string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	db := pgtest.New(t, identity.Migrations())
	mod, err := identity.New(identity.Config{APIKeyPepper: pepper}, identity.Deps{Pool: db.Pool, Logger: slog.Default()})
	require.NoError(t, err)
	srv, err := grpcserver.New(grpcserver.Options{Authenticator: mod.Authenticator()})
	require.NoError(t, err)
	mod.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	ctx := context.Background()
	a, err := mod.Service().Bootstrap(ctx, "tenant-a", "Tenant A")
	require.NoError(t, err)
	b, err := mod.Service().Bootstrap(ctx, "tenant-b", "Tenant B")
	require.NoError(t, err)
	return &testBundle{
		db: db, conn: conn, svc: mod.Service(),
		tenants: identityv1.NewTenantServiceClient(conn), ids: identityv1.NewIdentityServiceClient(conn),
		operator: a.APIKey, tenantA: a.TenantID, adminKeyB: b.APIKey, tenantB: b.TenantID,
	}
}

func as(key string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key)
}

func requireCode(t *testing.T, err error, code codes.Code, reason errorsv1.ErrorReason) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, status.Code(err), err.Error())
	if reason != errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		require.Equal(t, reason, apierr.ReasonOf(err))
	}
}

func TestCreateGetListIdentity(t *testing.T) {
	t.Parallel()
	b := setup(t)
	claims, _ := structpb.NewStruct(map[string]any{"name": "John Doe"})
	created, err := b.ids.CreateIdentity(as(b.operator), &identityv1.CreateIdentityRequest{
		ExternalId: "user@example.com", Role: "user", Claims: claims,
	})
	require.NoError(t, err)
	ident := created.GetIdentity()
	require.Equal(t, "user@example.com", ident.GetExternalId())
	require.Equal(t, b.tenantA, ident.GetTenantId())
	require.Equal(t, identityv1.IdentityKind_IDENTITY_KIND_USER, ident.GetKind())
	require.Equal(t, "John Doe", ident.GetClaims().GetFields()["name"].GetStringValue())

	got, err := b.ids.GetIdentity(as(b.operator), &identityv1.GetIdentityRequest{Id: ident.GetId()})
	require.NoError(t, err)
	require.Equal(t, ident.GetId(), got.GetIdentity().GetId())

	_, err = b.ids.CreateIdentity(as(b.operator), &identityv1.CreateIdentityRequest{ExternalId: "user@example.com"})
	requireCode(t, err, codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS)

	me, err := b.ids.GetMe(as(b.operator), &identityv1.GetMeRequest{})
	require.NoError(t, err)
	require.Equal(t, "admin", me.GetIdentity().GetExternalId())
}

func TestListPagesAndFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 7 {
		role := "user"
		if i%2 == 0 {
			role = "readonly"
		}
		_, err := b.ids.CreateIdentity(as(b.operator), &identityv1.CreateIdentityRequest{
			ExternalId: "u" + string(rune('a'+i)), Role: role, Kind: identityv1.IdentityKind_IDENTITY_KIND_AGENT,
		})
		require.NoError(t, err)
	}
	seen := map[string]bool{}
	req := &identityv1.ListIdentitiesRequest{PageSize: 3, Kind: identityv1.IdentityKind_IDENTITY_KIND_AGENT}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		resp, err := b.ids.ListIdentities(as(b.operator), req)
		require.NoError(t, err)
		for _, i := range resp.GetIdentities() {
			require.False(t, seen[i.GetId()], "identity listed twice")
			seen[i.GetId()] = true
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	require.Len(t, seen, 7)

	resp, err := b.ids.ListIdentities(as(b.operator), &identityv1.ListIdentitiesRequest{Role: "readonly"})
	require.NoError(t, err)
	require.Len(t, resp.GetIdentities(), 4)

	// A token is bound to the filters it was issued for.
	first, err := b.ids.ListIdentities(as(b.operator), &identityv1.ListIdentitiesRequest{PageSize: 1})
	require.NoError(t, err)
	_, err = b.ids.ListIdentities(as(b.operator), &identityv1.ListIdentitiesRequest{PageSize: 1, Role: "user", PageToken: first.GetNextPageToken()})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN)
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created, err := b.ids.CreateIdentity(as(b.operator), &identityv1.CreateIdentityRequest{ExternalId: "secret-agent"})
	require.NoError(t, err)

	// Tenant B's admin asks for tenant A's identity: not found, as if it did not exist.
	_, err = b.ids.GetIdentity(as(b.adminKeyB), &identityv1.GetIdentityRequest{Id: created.GetIdentity().GetId()})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	list, err := b.ids.ListIdentities(as(b.adminKeyB), &identityv1.ListIdentitiesRequest{ExternalId: "secret-agent"})
	require.NoError(t, err)
	require.Empty(t, list.GetIdentities())

	// Row-level security holds even for SQL that forgets the tenant filter.
	ctx := context.Background()
	var n int
	err = postgres.InTenantTx(ctx, b.db.Pool, b.tenantB, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT count(*) FROM identity.identities WHERE external_id = 'secret-agent'").Scan(&n)
	})
	require.NoError(t, err)
	require.Zero(t, n)
	err = postgres.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT count(*) FROM identity.identities").Scan(&n)
	})
	require.NoError(t, err)
	require.Zero(t, n, "without a tenant the app role sees no identities")
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.ids.ListIdentities(context.Background(), &identityv1.ListIdentitiesRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING)

	_, err = b.ids.ListIdentities(as("mk_live_nope"), &identityv1.ListIdentitiesRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED)

	// A well-formed key with a real prefix but the wrong secret.
	forged := b.operator[:len(b.operator)-4] + "AAAA"
	if forged == b.operator {
		forged = b.operator[:len(b.operator)-4] + "BBBB"
	}
	_, err = b.ids.ListIdentities(as(forged), &identityv1.ListIdentitiesRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN)

	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+b.operator)
	_, err = b.ids.ListIdentities(ctx, &identityv1.ListIdentitiesRequest{})
	require.NoError(t, err)

	ctx = metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic abc")
	_, err = b.ids.ListIdentities(ctx, &identityv1.ListIdentitiesRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED)

	// Revoked and expired keys are refused with their reason.
	_, err = b.db.Pool.Exec(context.Background(), "SELECT 1")
	require.NoError(t, err)
	admin := adminPool(t, b)
	_, err = admin.Exec(context.Background(), "UPDATE identity.api_keys SET revoke_time = now() WHERE tenant_id = $1", b.tenantB)
	require.NoError(t, err)
	_, err = b.ids.ListIdentities(as(b.adminKeyB), &identityv1.ListIdentitiesRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)
	_, err = admin.Exec(context.Background(), "UPDATE identity.api_keys SET revoke_time = NULL, expire_time = now() - interval '1 second' WHERE tenant_id = $1", b.tenantB)
	require.NoError(t, err)
	_, err = b.ids.ListIdentities(as(b.adminKeyB), &identityv1.ListIdentitiesRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED)
}

func adminPool(t *testing.T, b *testBundle) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestOperatorAndRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Tenant B's bootstrap key has the operator scope too; make a plain admin in A.
	tenants, err := b.tenants.ListTenants(as(b.operator), &identityv1.ListTenantsRequest{})
	require.NoError(t, err)
	require.Len(t, tenants.GetTenants(), 2)

	_, err = b.tenants.CreateTenant(as(b.operator), &identityv1.CreateTenantRequest{Slug: "tenant-a", Name: "dup"})
	requireCode(t, err, codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS)

	_, err = b.tenants.CreateTenant(as(b.operator), &identityv1.CreateTenantRequest{Slug: "Bad Slug!", Name: "x"})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	require.Contains(t, status.Convert(err).Message(), "slug")

	_, err = b.tenants.GetTenant(as(b.operator), &identityv1.GetTenantRequest{Id: "0190a2b4-0000-7000-8000-000000000000"})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
}

func TestIdempotentCreate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := &identityv1.CreateIdentityRequest{ExternalId: "agent-7", IdempotencyKey: "k1", Kind: identityv1.IdentityKind_IDENTITY_KIND_AGENT}
	first, err := b.ids.CreateIdentity(as(b.operator), req)
	require.NoError(t, err)
	again, err := b.ids.CreateIdentity(as(b.operator), req)
	require.NoError(t, err)
	require.Equal(t, first.GetIdentity().GetId(), again.GetIdentity().GetId())

	req.ExternalId = "agent-8"
	_, err = b.ids.CreateIdentity(as(b.operator), req)
	requireCode(t, err, codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_IDEMPOTENCY_CONFLICT)
}

func TestOutboxGetsEventInSameTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin := adminPool(t, b)
	var before int
	require.NoError(t, admin.QueryRow(context.Background(), "SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.identity.created'").Scan(&before))
	_, err := b.ids.CreateIdentity(as(b.operator), &identityv1.CreateIdentityRequest{ExternalId: "evented"})
	require.NoError(t, err)
	// A failed create (duplicate) writes no event.
	_, err = b.ids.CreateIdentity(as(b.operator), &identityv1.CreateIdentityRequest{ExternalId: "evented"})
	require.Error(t, err)
	var after int
	require.NoError(t, admin.QueryRow(context.Background(), "SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.identity.created'").Scan(&after))
	require.Equal(t, before+1, after)
}
