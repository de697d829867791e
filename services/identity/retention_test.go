package identity_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

// TestPurgeDeletedIdentities runs the retention sweeper over two tenants: tenant A
// keeps deleted identities the default 30 days, tenant B sets 90. Only identities
// deleted longer ago than their own tenant's window go, with their keys, through
// the hard-delete path (identity.deleted in the outbox); the rest stay listable
// with include_deleted, and live identities are untouched.
func TestPurgeDeletedIdentities(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	ctx := context.Background()
	db := adminConn(t, b.db)
	tenants := identityv1.NewTenantServiceClient(b.conn)
	_, err := tenants.UpdateTenant(as(b.adminA), tenantUpdate(b.tenantB,
		&identityv1.TenantSettings{DeletedIdentityRetentionDays: 90}, "", "settings.deleted_identity_retention_days"))
	require.NoError(t, err)

	// deleted creates an identity in the key's tenant, gives it an API key,
	// soft-deletes it through the API and moves its deletion back by age.
	deleted := func(key, externalID string, age time.Duration) string {
		t.Helper()
		created, err := b.ids.CreateIdentity(as(key), &identityv1.CreateIdentityRequest{ExternalId: externalID, Role: "agent"})
		require.NoError(t, err)
		id := created.GetIdentity().GetId()
		_, err = identityv1.NewApiKeyServiceClient(b.conn).CreateApiKey(as(key), &identityv1.CreateApiKeyRequest{IdentityId: id, Name: "k"})
		require.NoError(t, err)
		_, err = b.ids.DeleteIdentity(as(key), &identityv1.DeleteIdentityRequest{Id: id})
		require.NoError(t, err)
		_, err = db.Exec(ctx, "UPDATE identity.identities SET delete_time = now() - $2::interval WHERE id = $1",
			id, fmt.Sprintf("%d seconds", int(age.Seconds())))
		require.NoError(t, err)
		return id
	}
	const day = 24 * time.Hour
	oldA := deleted(b.adminA, "old-a", 31*day)
	recentA := deleted(b.adminA, "recent-a", 29*day)
	keptB := deleted(b.adminB, "kept-b", 31*day)
	oldB := deleted(b.adminB, "old-b", 91*day)
	live, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{ExternalId: "live-a", Role: "agent"})
	require.NoError(t, err)
	// A live identity created long ago is no deleted one.
	_, err = db.Exec(ctx, "UPDATE identity.identities SET create_time = now() - interval '400 days' WHERE id = $1", live.GetIdentity().GetId())
	require.NoError(t, err)

	events := func() int {
		var n int
		require.NoError(t, db.QueryRow(ctx, "SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.identity.deleted'").Scan(&n))
		return n
	}
	before := events()

	n, err := b.mod.Service().PurgeDeletedIdentities(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, before+2, events(), "one identity.deleted per purged identity")

	exists := func(id string) bool {
		var n int
		require.NoError(t, db.QueryRow(ctx, "SELECT count(*) FROM identity.identities WHERE id = $1", id).Scan(&n))
		return n == 1
	}
	keys := func(id string) int {
		var n int
		require.NoError(t, db.QueryRow(ctx, "SELECT count(*) FROM identity.api_keys WHERE identity_id = $1", id).Scan(&n))
		return n
	}
	require.False(t, exists(oldA), "past tenant A's default 30 days")
	require.False(t, exists(oldB), "past tenant B's 90 days")
	require.Zero(t, keys(oldA))
	require.Zero(t, keys(oldB))
	require.True(t, exists(keptB), "inside tenant B's 90 days")
	require.Equal(t, 1, keys(keptB))
	require.True(t, exists(recentA))

	// What is kept is still listed with include_deleted; the live identity is untouched.
	list, err := b.ids.ListIdentities(as(b.adminA), &identityv1.ListIdentitiesRequest{IncludeDeleted: true})
	require.NoError(t, err)
	var listed []string
	for _, ident := range list.GetIdentities() {
		listed = append(listed, ident.GetId())
	}
	require.Contains(t, listed, recentA)
	require.Contains(t, listed, live.GetIdentity().GetId())
	require.NotContains(t, listed, oldA)
	got, err := b.ids.GetIdentity(as(b.adminA), &identityv1.GetIdentityRequest{Id: live.GetIdentity().GetId()})
	require.NoError(t, err)
	require.True(t, got.GetIdentity().GetIsActive())
	require.Nil(t, got.GetIdentity().GetDeleteTime())
	list, err = b.ids.ListIdentities(as(b.adminB), &identityv1.ListIdentitiesRequest{ExternalId: "kept-b", IncludeDeleted: true})
	require.NoError(t, err)
	require.Len(t, list.GetIdentities(), 1)

	// Nothing else is due: a second pass purges nothing and writes no event.
	n, err = b.mod.Service().PurgeDeletedIdentities(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, before+2, events())

	// Shortening tenant B's window makes its remaining identity due.
	_, err = tenants.UpdateTenant(as(b.adminB), tenantUpdate(b.tenantB,
		&identityv1.TenantSettings{DeletedIdentityRetentionDays: 7}, "", "settings.deleted_identity_retention_days"))
	require.NoError(t, err)
	n, err = b.mod.Service().PurgeDeletedIdentities(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.False(t, exists(keptB))
	require.True(t, exists(recentA), "tenant A's window did not change")
}

// TestDeletedIdentityRetentionSetting covers the setting over gRPC and REST: set
// and read back through UpdateTenant and CreateTenant, out-of-range values
// refused naming the field, a non-admin refused.
func TestDeletedIdentityRetentionSetting(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	base := restFront(t, b, httptest.NewUnstartedServer(nil))
	target := apitest.Target{GRPC: b.conn, RESTBase: base}
	b.user(t, "root@example.com", "admin")
	b.user(t, "ada@example.com", "user")
	adminHdr := map[string]string{"Authorization": "Bearer " + b.login(t, "root@example.com").GetAccessToken()}
	userHdr := map[string]string{"Authorization": "Bearer " + b.login(t, "ada@example.com").GetAccessToken()}
	const field = "settings.deleted_identity_retention_days"

	apitest.Run(t, target,
		apitest.Case{
			Name: "admin sets the window", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{DeletedIdentityRetentionDays: 7}, "", field),
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				s := apitest.As[*identityv1.UpdateTenantResponse](t, resp).GetTenant().GetSettings()
				require.Equal(t, int32(7), s.GetDeletedIdentityRetentionDays())
			},
		},
		apitest.Case{
			Name: "no mask sets it when given", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{DeletedIdentityRetentionDays: 3650}, ""),
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				s := apitest.As[*identityv1.UpdateTenantResponse](t, resp).GetTenant().GetSettings()
				require.Equal(t, int32(3650), s.GetDeletedIdentityRetentionDays())
			},
		},
		apitest.Case{
			Name: "above ten years", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{DeletedIdentityRetentionDays: 3651}, "", field),
			WantCode: codes.InvalidArgument, WantField: "tenant." + field,
		},
		apitest.Case{
			Name: "negative", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{DeletedIdentityRetentionDays: -1}, "", field),
			WantCode: codes.InvalidArgument, WantField: "tenant." + field,
		},
		apitest.Case{
			Name: "user cannot set it", Method: updateTenantMethod, Headers: userHdr,
			Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{DeletedIdentityRetentionDays: 1}, "", field),
			WantCode: codes.PermissionDenied,
		},
		apitest.Case{
			Name: "admin of A cannot set tenant B's", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantB, &identityv1.TenantSettings{DeletedIdentityRetentionDays: 1}, "", field),
			WantCode: codes.NotFound,
		},
		apitest.Case{
			Name: "create with a window", Method: "/manushya.identity.v1.TenantService/CreateTenant", Credential: b.adminA,
			NewRequest: func(tr apitest.Transport) proto.Message {
				return &identityv1.CreateTenantRequest{Slug: "kept-" + string(tr), Name: "Kept",
					Settings: &identityv1.TenantSettings{DeletedIdentityRetentionDays: 90}}
			},
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				s := apitest.As[*identityv1.CreateTenantResponse](t, resp).GetTenant().GetSettings()
				require.Equal(t, int32(90), s.GetDeletedIdentityRetentionDays())
			},
		},
		apitest.Case{
			Name: "create with too long a window", Method: "/manushya.identity.v1.TenantService/CreateTenant", Credential: b.adminA,
			NewRequest: func(tr apitest.Transport) proto.Message {
				return &identityv1.CreateTenantRequest{Slug: "long-" + string(tr), Name: "Long",
					Settings: &identityv1.TenantSettings{DeletedIdentityRetentionDays: 4000}}
			},
			WantCode: codes.InvalidArgument, WantField: field,
		},
	)

	// The refused values did not land: the last accepted one stands, and tenant B
	// kept the default.
	tenants := identityv1.NewTenantServiceClient(b.conn)
	got, err := tenants.GetTenant(as(b.adminA), &identityv1.GetTenantRequest{Id: b.tenantA})
	require.NoError(t, err)
	require.Equal(t, int32(3650), got.GetTenant().GetSettings().GetDeletedIdentityRetentionDays())
	got, err = tenants.GetTenant(as(b.adminA), &identityv1.GetTenantRequest{Id: b.tenantB})
	require.NoError(t, err)
	require.Zero(t, got.GetTenant().GetSettings().GetDeletedIdentityRetentionDays())
}
