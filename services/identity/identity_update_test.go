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
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/identity"
)

// allowAll stands for a tenant policy that lets every identity call every method, so
// the tests reach the handlers' own limits (self-only updates, no escalation), which
// hold whatever the policies allow.
type allowAll struct{}

func (allowAll) Authorize(context.Context, *auth.Principal, authz.Access) error { return nil }

type updBundle struct {
	db      *pgtest.DB
	svc     *identity.Service
	ids     identityv1.IdentityServiceClient
	adminA  string // API key: admin of tenant A (and operator)
	adminB  string
	tenantA string
}

func updSetup(t *testing.T) *updBundle {
	t.Helper()
	db := pgtest.New(t, identity.Migrations())
	mod, err := identity.New(identity.Config{APIKeyPepper: pepper}, identity.Deps{Pool: db.Pool, Logger: slog.Default()})
	require.NoError(t, err)
	srv, err := grpcserver.New(grpcserver.Options{Authenticator: mod.Authenticator(), Authorizer: allowAll{}})
	require.NoError(t, err)
	mod.Register(srv)
	ctx := context.Background()
	require.NoError(t, mod.Start(ctx))
	t.Cleanup(func() { _ = mod.Stop(context.Background()) })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	a, err := mod.Service().Bootstrap(ctx, "tenant-a", "Tenant A")
	require.NoError(t, err)
	b, err := mod.Service().Bootstrap(ctx, "tenant-b", "Tenant B")
	require.NoError(t, err)
	return &updBundle{db: db, svc: mod.Service(), ids: identityv1.NewIdentityServiceClient(conn),
		adminA: a.APIKey, adminB: b.APIKey, tenantA: a.TenantID}
}

// create makes an identity in tenant A; with tokens it returns its access token.
func (b *updBundle) create(t *testing.T, externalID, role string, claims map[string]any, tokens bool) (*identityv1.Identity, string) {
	t.Helper()
	req := &identityv1.CreateIdentityRequest{ExternalId: externalID, Role: role, IssueToken: tokens}
	if claims != nil {
		s, err := structpb.NewStruct(claims)
		require.NoError(t, err)
		req.Claims = s
	}
	resp, err := b.ids.CreateIdentity(as(b.adminA), req)
	require.NoError(t, err)
	return resp.GetIdentity(), resp.GetTokens().GetAccessToken()
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

func claimsOf(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

func TestUpdateIdentityMasksAndClaims(t *testing.T) {
	t.Parallel()
	b := updSetup(t)
	ctx := as(b.adminA)
	ident, _ := b.create(t, "ann", "user", map[string]any{"a": 1, "b": 2}, false)
	b.create(t, "taken", "user", nil, false)

	// Merge: new keys added, existing ones overwritten, the rest kept.
	resp, err := b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity:   &identityv1.Identity{Id: ident.GetId(), Claims: claimsOf(t, map[string]any{"b": 3, "c": "x"}), ExternalId: "ignored"},
		UpdateMask: mask("claims"),
	})
	require.NoError(t, err)
	got := resp.GetIdentity()
	require.Equal(t, map[string]any{"a": 1.0, "b": 3.0, "c": "x"}, got.GetClaims().AsMap())
	require.Equal(t, "ann", got.GetExternalId(), "fields outside the mask do not change")

	// Replace.
	resp, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity:   &identityv1.Identity{Id: ident.GetId(), Claims: claimsOf(t, map[string]any{"z": true})},
		UpdateMask: mask("claims"), ReplaceClaims: true,
	})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"z": true}, resp.GetIdentity().GetClaims().AsMap())

	// An empty mask means every field set: here external_id and roles.
	resp, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: ident.GetId(), ExternalId: "ann@example.com", Roles: []string{"support"}},
	})
	require.NoError(t, err)
	got = resp.GetIdentity()
	require.Equal(t, "ann@example.com", got.GetExternalId())
	require.Equal(t, []string{"support"}, got.GetRoles())
	require.Equal(t, "user", got.GetRole())
	require.True(t, got.GetIsActive())
	require.Equal(t, map[string]any{"z": true}, got.GetClaims().AsMap())

	// Role and roles through the mask; an empty roles list clears them.
	resp, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: ident.GetId(), Role: "readonly"}, UpdateMask: mask("role", "roles"),
	})
	require.NoError(t, err)
	require.Equal(t, "readonly", resp.GetIdentity().GetRole())
	require.Empty(t, resp.GetIdentity().GetRoles())

	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: ident.GetId(), ExternalId: "taken"}, UpdateMask: mask("external_id"),
	})
	requireCode(t, err, codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS)
	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: ident.GetId(), Kind: identityv1.IdentityKind_IDENTITY_KIND_AGENT}, UpdateMask: mask("kind"),
	})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	require.Contains(t, status.Convert(err).Message(), "update_mask")
	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: ident.GetId(), Role: "Not A Role"}, UpdateMask: mask("role"),
	})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	require.Contains(t, status.Convert(err).Message(), "identity.role")
	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{Identity: &identityv1.Identity{Id: ident.GetId()}})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{Identity: &identityv1.Identity{Id: ident.GetId()}, UpdateMask: mask("id")})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)

	// One identity.updated per successful update, none for the refused ones.
	var n int
	require.NoError(t, adminConn(t, b.db).QueryRow(context.Background(),
		"SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.identity.updated'").Scan(&n))
	require.Equal(t, 4, n)
}

func adminConn(t *testing.T, db *pgtest.DB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestUpdateIdentityLimits(t *testing.T) {
	t.Parallel()
	b := updSetup(t)
	me, tok := b.create(t, "me", "user", map[string]any{"team": "a"}, true)
	other, _ := b.create(t, "other", "user", nil, false)
	ctx := bearer(tok)

	// A user may change their own claims and external_id, and send back unchanged roles.
	resp, err := b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: me.GetId(), Role: "user", IsActive: true, Claims: claimsOf(t, map[string]any{"name": "Me"})},
	})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"team": "a", "name": "Me"}, resp.GetIdentity().GetClaims().AsMap())

	// Nobody grants a role above their own, themselves included.
	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: me.GetId(), Role: "admin"}, UpdateMask: mask("role"),
	})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_ROLE_ESCALATION)
	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: me.GetId(), Roles: []string{"admin"}}, UpdateMask: mask("roles"),
	})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_ROLE_ESCALATION)
	// Not even lower roles, nor is_active, on oneself.
	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: me.GetId(), Role: "readonly"}, UpdateMask: mask("role"),
	})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: me.GetId(), Roles: []string{"support"}}, UpdateMask: mask("roles"),
	})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: me.GetId()}, UpdateMask: mask("is_active"),
	})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	// And nobody else.
	_, err = b.ids.UpdateIdentity(ctx, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: other.GetId(), Claims: claimsOf(t, map[string]any{"x": 1})}, UpdateMask: mask("claims"),
	})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	_, err = b.ids.DeleteIdentity(ctx, &identityv1.DeleteIdentityRequest{Id: other.GetId()})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)

	// Another tenant's admin finds neither identity, for update or delete.
	_, err = b.ids.UpdateIdentity(as(b.adminB), &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: other.GetId(), Role: "readonly"}, UpdateMask: mask("role"),
	})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.ids.DeleteIdentity(as(b.adminB), &identityv1.DeleteIdentityRequest{Id: other.GetId(), Hard: true})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	got, err := b.ids.GetIdentity(as(b.adminA), &identityv1.GetIdentityRequest{Id: other.GetId()})
	require.NoError(t, err)
	require.Equal(t, "user", got.GetIdentity().GetRole())
}

func TestDeactivateAndDeleteCutCredentials(t *testing.T) {
	t.Parallel()
	b := updSetup(t)
	admin := as(b.adminA)
	ident, tok := b.create(t, "agent-1", "agent", nil, true)
	key, err := b.svc.IssueAPIKey(context.Background(), b.tenantA, ident.GetId(), "k", nil, nil)
	require.NoError(t, err)
	// Both work, and the key's verification is now cached.
	for _, ctx := range []context.Context{bearer(tok), as(key)} {
		_, err := b.ids.GetMe(ctx, &identityv1.GetMeRequest{})
		require.NoError(t, err)
	}

	// Deactivation: both stop at once; reactivation brings the key back, not the session.
	_, err = b.ids.UpdateIdentity(admin, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: ident.GetId()}, UpdateMask: mask("is_active"),
	})
	require.NoError(t, err)
	for _, ctx := range []context.Context{bearer(tok), as(key)} {
		_, err := b.ids.GetMe(ctx, &identityv1.GetMeRequest{})
		requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	}
	_, err = b.ids.UpdateIdentity(admin, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: ident.GetId(), IsActive: true}, UpdateMask: mask("is_active"),
	})
	require.NoError(t, err)
	_, err = b.ids.GetMe(as(key), &identityv1.GetMeRequest{})
	require.NoError(t, err)
	_, err = b.ids.GetMe(bearer(tok), &identityv1.GetMeRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)

	// A soft delete: key and token stop at once.
	gone, goneTok := b.create(t, "agent-2", "agent", nil, true)
	goneKey, err := b.svc.IssueAPIKey(context.Background(), b.tenantA, gone.GetId(), "k", nil, nil)
	require.NoError(t, err)
	for _, ctx := range []context.Context{bearer(goneTok), as(goneKey)} {
		_, err := b.ids.GetMe(ctx, &identityv1.GetMeRequest{})
		require.NoError(t, err)
	}
	for _, id := range []string{ident.GetId(), gone.GetId()} {
		_, err = b.ids.DeleteIdentity(admin, &identityv1.DeleteIdentityRequest{Id: id})
		require.NoError(t, err)
	}
	for _, ctx := range []context.Context{bearer(goneTok), as(goneKey), as(key)} {
		_, err := b.ids.GetMe(ctx, &identityv1.GetMeRequest{})
		requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	}

	var reason string
	require.NoError(t, adminConn(t, b.db).QueryRow(context.Background(),
		"SELECT revoke_reason FROM identity.api_keys WHERE identity_id = $1", gone.GetId()).Scan(&reason))
	require.Equal(t, "identity_deleted", reason)

	// Hidden from get and list, shown by list with include_deleted.
	_, err = b.ids.GetIdentity(admin, &identityv1.GetIdentityRequest{Id: ident.GetId()})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	list, err := b.ids.ListIdentities(admin, &identityv1.ListIdentitiesRequest{ExternalId: "agent-1"})
	require.NoError(t, err)
	require.Empty(t, list.GetIdentities())
	list, err = b.ids.ListIdentities(admin, &identityv1.ListIdentitiesRequest{ExternalId: "agent-1", IncludeDeleted: true})
	require.NoError(t, err)
	require.Len(t, list.GetIdentities(), 1)
	require.NotNil(t, list.GetIdentities()[0].GetDeleteTime())
	require.False(t, list.GetIdentities()[0].GetIsActive())
	// Deleted once; its external_id is free again.
	_, err = b.ids.DeleteIdentity(admin, &identityv1.DeleteIdentityRequest{Id: ident.GetId()})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.ids.UpdateIdentity(admin, &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: ident.GetId(), Role: "user"}, UpdateMask: mask("role"),
	})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	b.create(t, "agent-1", "agent", nil, false)

	// A hard delete purges the soft-deleted row and its keys.
	_, err = b.ids.DeleteIdentity(admin, &identityv1.DeleteIdentityRequest{Id: ident.GetId(), Hard: true})
	require.NoError(t, err)
	conn := adminConn(t, b.db)
	var rows, keys int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM identity.identities WHERE id = $1", ident.GetId()).Scan(&rows))
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM identity.api_keys WHERE identity_id = $1", ident.GetId()).Scan(&keys))
	require.Zero(t, rows)
	require.Zero(t, keys)
	var events int
	require.NoError(t, conn.QueryRow(context.Background(),
		"SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.identity.deleted'").Scan(&events))
	require.Equal(t, 3, events)
}

func TestHardDeleteLiveIdentity(t *testing.T) {
	t.Parallel()
	b := updSetup(t)
	ident, tok := b.create(t, "svc", "user", nil, true)
	key, err := b.svc.IssueAPIKey(context.Background(), b.tenantA, ident.GetId(), "k", nil, nil)
	require.NoError(t, err)
	_, err = b.ids.GetMe(as(key), &identityv1.GetMeRequest{})
	require.NoError(t, err)

	_, err = b.ids.DeleteIdentity(as(b.adminA), &identityv1.DeleteIdentityRequest{Id: ident.GetId(), Hard: true})
	require.NoError(t, err)
	for _, ctx := range []context.Context{bearer(tok), as(key)} {
		_, err := b.ids.GetMe(ctx, &identityv1.GetMeRequest{})
		requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	}
	list, err := b.ids.ListIdentities(as(b.adminA), &identityv1.ListIdentitiesRequest{ExternalId: "svc", IncludeDeleted: true})
	require.NoError(t, err)
	require.Empty(t, list.GetIdentities())
}

func TestBulkCreateAndDelete(t *testing.T) {
	t.Parallel()
	b := updSetup(t)
	admin := as(b.adminA)
	existing, _ := b.create(t, "exists", "user", nil, false)
	_, userTok := b.create(t, "plain-user", "user", nil, true)

	resp, err := b.ids.BulkCreateIdentities(admin, &identityv1.BulkCreateIdentitiesRequest{Identities: []*identityv1.CreateIdentityRequest{
		{ExternalId: "bulk-1", Kind: identityv1.IdentityKind_IDENTITY_KIND_AGENT, Role: "agent"},
		{ExternalId: "exists"},
		{ExternalId: "bulk-2", IssueToken: true},
		{ExternalId: "bulk-1"},
		{ExternalId: "bulk-3", Role: "admin", IdempotencyKey: "b3"},
	}})
	require.NoError(t, err)
	res := resp.GetResults()
	require.Len(t, res, 5)
	wantCodes := []codes.Code{codes.OK, codes.AlreadyExists, codes.InvalidArgument, codes.AlreadyExists, codes.OK}
	for i, want := range wantCodes {
		require.Equal(t, int32(want), res[i].GetStatus().GetCode(), "item %d: %s", i, res[i].GetStatus().GetMessage())
		require.Equal(t, want == codes.OK, res[i].GetIdentity() != nil, "item %d", i)
	}
	require.Contains(t, res[2].GetStatus().GetMessage(), "identities[2].issue_token")
	require.Equal(t, "bulk-1", res[0].GetIdentity().GetExternalId())
	list, err := b.ids.ListIdentities(admin, &identityv1.ListIdentitiesRequest{ExternalId: "bulk-2"})
	require.NoError(t, err)
	require.Empty(t, list.GetIdentities(), "a refused item creates nothing")

	// A retry of an item with its idempotency key gets the same identity.
	again, err := b.ids.BulkCreateIdentities(admin, &identityv1.BulkCreateIdentitiesRequest{Identities: []*identityv1.CreateIdentityRequest{
		{ExternalId: "bulk-3", Role: "admin", IdempotencyKey: "b3"},
	}})
	require.NoError(t, err)
	require.Equal(t, res[4].GetIdentity().GetId(), again.GetResults()[0].GetIdentity().GetId())

	// A user cannot hand out admin in bulk either.
	esc, err := b.ids.BulkCreateIdentities(bearer(userTok), &identityv1.BulkCreateIdentitiesRequest{Identities: []*identityv1.CreateIdentityRequest{
		{ExternalId: "boss", Role: "admin"}, {ExternalId: "peer", Role: "readonly"},
	}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.PermissionDenied), esc.GetResults()[0].GetStatus().GetCode())
	require.Equal(t, int32(codes.OK), esc.GetResults()[1].GetStatus().GetCode())

	foreign, err := b.ids.CreateIdentity(as(b.adminB), &identityv1.CreateIdentityRequest{ExternalId: "b-only"})
	require.NoError(t, err)
	missing := "0190a2b4-0000-7000-8000-000000000000"
	del, err := b.ids.BulkDeleteIdentities(admin, &identityv1.BulkDeleteIdentitiesRequest{Ids: []string{
		res[0].GetIdentity().GetId(), missing, foreign.GetIdentity().GetId(), existing.GetId(), existing.GetId(),
	}})
	require.NoError(t, err)
	dres := del.GetResults()
	require.Len(t, dres, 5)
	wantCodes = []codes.Code{codes.OK, codes.NotFound, codes.NotFound, codes.OK, codes.NotFound}
	for i, want := range wantCodes {
		require.Equal(t, int32(want), dres[i].GetStatus().GetCode(), "item %d: %s", i, dres[i].GetStatus().GetMessage())
	}
	require.Equal(t, missing, dres[1].GetId())
	_, err = b.ids.GetIdentity(as(b.adminB), &identityv1.GetIdentityRequest{Id: foreign.GetIdentity().GetId()})
	require.NoError(t, err, "another tenant's identity is untouched")
	_, err = b.ids.GetIdentity(admin, &identityv1.GetIdentityRequest{Id: existing.GetId()})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)

	// Hard bulk delete purges, soft-deleted ones included.
	hard, err := b.ids.BulkDeleteIdentities(admin, &identityv1.BulkDeleteIdentitiesRequest{Hard: true, Ids: []string{existing.GetId(), missing}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), hard.GetResults()[0].GetStatus().GetCode())
	require.Equal(t, int32(codes.NotFound), hard.GetResults()[1].GetStatus().GetCode())
	list, err = b.ids.ListIdentities(admin, &identityv1.ListIdentitiesRequest{ExternalId: "exists", IncludeDeleted: true})
	require.NoError(t, err)
	require.Empty(t, list.GetIdentities())
}
