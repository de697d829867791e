package identity_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

const restoreMethod = "/manushya.identity.v1.IdentityService/RestoreIdentity"

// TestRestoreIdentity covers RestoreIdentity over gRPC and REST: inside the
// tenant's window the identity comes back active with its sessions and keys still
// revoked; past the window, a live identity and a taken external_id are refused;
// a purged identity and another tenant's are NOT_FOUND; a non-admin is refused;
// a bad id names the field. identity.restored is written for each restore.
func TestRestoreIdentity(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	ctx := context.Background()
	// A pool, not one connection: the gRPC and REST runs of a case share it.
	db, err := pgxpool.New(ctx, b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	base := restFront(t, b, httptest.NewUnstartedServer(nil))
	target := apitest.Target{GRPC: b.conn, RESTBase: base}
	b.user(t, "ada@example.com", "user")
	userHdr := map[string]string{"Authorization": "Bearer " + b.login(t, "ada@example.com").GetAccessToken()}
	const day = 24 * time.Hour

	// The gRPC and REST runs of a case run at the same time.
	var n atomic.Int64
	var mu sync.Mutex
	// deleted creates an identity of tenant A that signed in and holds an API key,
	// soft-deletes it through the API and moves its deletion back by age.
	deleted := func(t testing.TB, age time.Duration) string {
		t.Helper()
		ext := fmt.Sprintf("gone-%d@example.com", n.Add(1))
		id := b.user(t, ext, "agent")
		b.login(t, ext)
		_, err := identityv1.NewApiKeyServiceClient(b.conn).CreateApiKey(as(b.adminA), &identityv1.CreateApiKeyRequest{IdentityId: id, Name: "k"})
		require.NoError(t, err)
		_, err = b.ids.DeleteIdentity(as(b.adminA), &identityv1.DeleteIdentityRequest{Id: id})
		require.NoError(t, err)
		_, err = db.Exec(ctx, "UPDATE identity.identities SET delete_time = now() - $2::interval WHERE id = $1",
			id, fmt.Sprintf("%d seconds", int(age.Seconds())))
		require.NoError(t, err)
		return id
	}
	count := func(sql string, args ...any) int {
		t.Helper()
		var c int
		require.NoError(t, db.QueryRow(ctx, sql, args...).Scan(&c))
		return c
	}
	restoredEvents := func() int {
		return count("SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.identity.restored'")
	}
	before := restoredEvents()
	var restored []string

	apitest.Run(t, target,
		apitest.Case{
			Name: "admin restores inside the window", Method: restoreMethod, Credential: b.adminA,
			NewRequest: func(apitest.Transport) proto.Message {
				return &identityv1.RestoreIdentityRequest{Id: deleted(t, 29*day)}
			},
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				ident := apitest.As[*identityv1.RestoreIdentityResponse](t, resp).GetIdentity()
				require.True(t, ident.GetIsActive())
				require.Nil(t, ident.GetDeleteTime())
				require.Equal(t, "agent", ident.GetRole())
				mu.Lock()
				restored = append(restored, ident.GetId())
				mu.Unlock()
			},
		},
		apitest.Case{
			Name: "past the window", Method: restoreMethod, Credential: b.adminA,
			NewRequest: func(apitest.Transport) proto.Message {
				return &identityv1.RestoreIdentityRequest{Id: deleted(t, 31*day)}
			},
			WantCode: codes.FailedPrecondition,
			CheckStatus: func(t testing.TB, st *status.Status) {
				require.Contains(t, st.Message(), "restore window of 30 days")
			},
		},
		apitest.Case{
			Name: "live identity", Method: restoreMethod, Credential: b.adminA,
			NewRequest: func(apitest.Transport) proto.Message {
				return &identityv1.RestoreIdentityRequest{Id: b.user(t, fmt.Sprintf("live-%d@example.com", n.Add(1)), "agent")}
			},
			WantCode: codes.FailedPrecondition,
			CheckStatus: func(t testing.TB, st *status.Status) {
				require.Contains(t, st.Message(), "is not deleted")
			},
		},
		apitest.Case{
			Name: "purged identity", Method: restoreMethod, Credential: b.adminA,
			NewRequest: func(apitest.Transport) proto.Message {
				id := deleted(t, day)
				_, err := b.ids.DeleteIdentity(as(b.adminA), &identityv1.DeleteIdentityRequest{Id: id, Hard: true})
				require.NoError(t, err)
				return &identityv1.RestoreIdentityRequest{Id: id}
			},
			WantCode: codes.NotFound,
		},
		apitest.Case{
			Name: "external_id taken meanwhile", Method: restoreMethod, Credential: b.adminA,
			NewRequest: func(apitest.Transport) proto.Message {
				id := deleted(t, day)
				var ext string
				require.NoError(t, db.QueryRow(ctx, "SELECT external_id FROM identity.identities WHERE id = $1", id).Scan(&ext))
				_, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{ExternalId: ext, Role: "agent"})
				require.NoError(t, err)
				return &identityv1.RestoreIdentityRequest{Id: id}
			},
			WantCode: codes.AlreadyExists,
		},
		apitest.Case{
			Name: "user cannot restore", Method: restoreMethod, Headers: userHdr,
			NewRequest: func(apitest.Transport) proto.Message {
				return &identityv1.RestoreIdentityRequest{Id: deleted(t, day)}
			},
			WantCode: codes.PermissionDenied,
		},
		apitest.Case{
			Name: "admin of B cannot restore tenant A's", Method: restoreMethod, Credential: b.adminB,
			NewRequest: func(apitest.Transport) proto.Message {
				return &identityv1.RestoreIdentityRequest{Id: deleted(t, day)}
			},
			WantCode: codes.NotFound,
		},
		apitest.Case{
			Name: "bad id", Method: restoreMethod, Credential: b.adminA,
			Request:  &identityv1.RestoreIdentityRequest{Id: "not-a-uuid"},
			WantCode: codes.InvalidArgument, WantField: "id",
		},
	)

	trailing := deleted(t, day)
	apitest.RunRaw(t, target,
		apitest.RawCase{
			Name: "trailing slash", HTTPMethod: http.MethodPost, Path: "/v1/identity/" + trailing + "/restore/",
			Body: "{}", Credential: b.adminA, WantStatus: http.StatusOK,
		},
		apitest.RawCase{
			Name: "no body", HTTPMethod: http.MethodPost, Path: "/v1/identity/" + deleted(t, day) + "/restore",
			Credential: b.adminA, WantStatus: http.StatusOK,
		},
		apitest.RawCase{
			Name: "bad id in the path", HTTPMethod: http.MethodPost, Path: "/v1/identity/nope/restore",
			Body: "{}", Credential: b.adminA, WantStatus: http.StatusBadRequest, WantField: "id",
		},
	)
	restored = append(restored, trailing)

	require.Len(t, restored, 3)
	require.Equal(t, before+4, restoredEvents(), "one identity.restored per restore")
	for _, id := range restored {
		got, err := b.ids.GetIdentity(as(b.adminA), &identityv1.GetIdentityRequest{Id: id})
		require.NoError(t, err)
		require.True(t, got.GetIdentity().GetIsActive())
		// What the deletion revoked stays revoked: the admin issues new credentials.
		require.Zero(t, count("SELECT count(*) FROM identity.api_keys WHERE identity_id = $1 AND revoke_time IS NULL", id))
		require.Zero(t, count("SELECT count(*) FROM identity.sessions WHERE identity_id = $1 AND revoke_time IS NULL", id))
		require.Equal(t, 1, count("SELECT count(*) FROM identity.sessions WHERE identity_id = $1", id))
	}
	// The restored identity signs in again and can be given a new key.
	var ext string
	require.NoError(t, db.QueryRow(ctx, "SELECT external_id FROM identity.identities WHERE id = $1", restored[0]).Scan(&ext))
	b.login(t, ext)
	_, err = identityv1.NewApiKeyServiceClient(b.conn).CreateApiKey(as(b.adminA), &identityv1.CreateApiKeyRequest{IdentityId: restored[0], Name: "new"})
	require.NoError(t, err)
}

// TestIdentityPurgedEvent checks that every purge writes identity.purged with the
// identity's id only (DeleteIdentity with hard, BulkDeleteIdentities with hard,
// the retention sweeper), and that a soft delete does not.
func TestIdentityPurgedEvent(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	ctx := context.Background()
	db := adminConn(t, b.db)
	create := func(ext string) string {
		t.Helper()
		created, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{ExternalId: ext, Role: "agent"})
		require.NoError(t, err)
		return created.GetIdentity().GetId()
	}
	purged := func(id string) int {
		t.Helper()
		var c int
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.identity.purged'
			AND convert_from(payload, 'UTF8')::jsonb -> 'data' = jsonb_build_object('identity_id', $1::text)`, id).Scan(&c))
		return c
	}

	soft := create("soft")
	_, err := b.ids.DeleteIdentity(as(b.adminA), &identityv1.DeleteIdentityRequest{Id: soft})
	require.NoError(t, err)
	require.Zero(t, purged(soft), "a soft delete keeps the memories")

	hard := create("hard")
	_, err = b.ids.DeleteIdentity(as(b.adminA), &identityv1.DeleteIdentityRequest{Id: hard, Hard: true})
	require.NoError(t, err)
	require.Equal(t, 1, purged(hard))

	bulk := create("bulk")
	resp, err := b.ids.BulkDeleteIdentities(as(b.adminA), &identityv1.BulkDeleteIdentitiesRequest{Ids: []string{bulk}, Hard: true})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), resp.GetResults()[0].GetStatus().GetCode())
	require.Equal(t, 1, purged(bulk))

	// The sweeper purges the soft-deleted one once its window has ended.
	_, err = db.Exec(ctx, "UPDATE identity.identities SET delete_time = now() - interval '31 days' WHERE id = $1", soft)
	require.NoError(t, err)
	n, err := b.mod.Service().PurgeDeletedIdentities(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1, purged(soft))
}
