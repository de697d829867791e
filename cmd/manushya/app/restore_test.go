package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

// withMemories creates an identity of the admin's tenant with an API key and n
// memories (embedded, so each has a vector), and returns its id and key.
func withMemories(t *testing.T, tgt apitest.Target, admin, external string, n int) (string, string) {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", admin)
	created, err := identityv1.NewIdentityServiceClient(tgt.GRPC).CreateIdentity(ctx, &identityv1.CreateIdentityRequest{ExternalId: external, Role: "user"})
	require.NoError(t, err)
	id := created.GetIdentity().GetId()
	key, err := identityv1.NewApiKeyServiceClient(tgt.GRPC).CreateApiKey(ctx, &identityv1.CreateApiKeyRequest{Name: "own", IdentityId: id})
	require.NoError(t, err)
	own := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key.GetKey())
	for i := range n {
		_, err := memoryv1.NewMemoryServiceClient(tgt.GRPC).CreateMemory(own, &memoryv1.CreateMemoryRequest{
			Text: fmt.Sprintf("%s remembers trip %d", external, i), Wait: true,
		})
		require.NoError(t, err)
	}
	return id, key.GetKey()
}

// TestDeleteRestorePurgeEndToEnd drives the restore window over REST in the whole
// binary: a soft-deleted identity restored within its window finds its memories
// where it left them; a hard-deleted one takes its memories (versions and vectors)
// with it through identity.purged, and nobody else's.
func TestDeleteRestorePurgeEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all")
	ctx := context.Background()
	boot, err := a.Identity().Service().Bootstrap(ctx, "restore-a", "Restore A")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	admin := boot.APIKey
	db := adminConn(t, s)
	memories := func(id string) int64 {
		return countRows(t, db, `SELECT count(*) FROM memory.memories WHERE identity_id = $1`, id)
	}

	kept, _ := withMemories(t, tgt, admin, "kept@example.com", 2)
	back, _ := withMemories(t, tgt, admin, "back@example.com", 2)
	gone, _ := withMemories(t, tgt, admin, "gone@example.com", 3)
	require.EqualValues(t, 3, countRows(t, db, `SELECT count(*) FROM memory.memories WHERE identity_id = $1 AND embedding IS NOT NULL`, gone))

	// Soft delete, then restore: the memories stayed and are there for the identity.
	code, body := rest(t, tgt, http.MethodDelete, "/v1/identity/"+back, admin, "")
	require.Equal(t, http.StatusOK, code, string(body))
	code, body = rest(t, tgt, http.MethodPost, "/v1/identity/"+back+"/restore", admin, `{}`)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Contains(t, string(body), `"is_active":true`)
	code, body = rest(t, tgt, http.MethodPost, "/v1/identity/"+back+"/restore", admin, `{}`)
	require.Equal(t, http.StatusBadRequest, code, "a live identity is not restored: %s", body)
	require.EqualValues(t, 2, memories(back))
	// Its old key stays revoked; a new one reads the memories.
	ctxAdmin := metadata.AppendToOutgoingContext(ctx, "x-api-key", admin)
	key, err := identityv1.NewApiKeyServiceClient(tgt.GRPC).CreateApiKey(ctxAdmin, &identityv1.CreateApiKeyRequest{Name: "new", IdentityId: back})
	require.NoError(t, err)
	code, body = rest(t, tgt, http.MethodGet, "/v1/memory", key.GetKey(), "")
	require.Equal(t, http.StatusOK, code, string(body))
	require.Contains(t, string(body), "back@example.com remembers trip 1")

	// Hard delete: identity.purged takes the memories, their versions and vectors.
	var memIDs []string
	rows, err := db.Query(ctx, `SELECT id::text FROM memory.memories WHERE identity_id = $1`, gone)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		memIDs = append(memIDs, id)
	}
	require.NoError(t, rows.Err())
	code, body = rest(t, tgt, http.MethodDelete, "/v1/identity/"+gone+"?hard=true", admin, "")
	require.Equal(t, http.StatusOK, code, string(body))
	require.Eventually(t, func() bool { return memories(gone) == 0 }, 30*time.Second, 50*time.Millisecond)
	require.Zero(t, countRows(t, db, `SELECT count(*) FROM memory.memory_versions WHERE memory_id::text = ANY ($1)`, memIDs))
	code, body = rest(t, tgt, http.MethodPost, "/v1/identity/"+gone+"/restore", admin, `{}`)
	require.Equal(t, http.StatusNotFound, code, "a purged identity is not restored: %s", body)

	require.EqualValues(t, 2, memories(kept), "another identity keeps its memories")
	require.EqualValues(t, 2, memories(back))

	// The restores are in the audit log, the refused one included.
	audit := eventsv1.NewAuditServiceClient(tgt.GRPC)
	require.Eventually(t, func() bool {
		resp, err := audit.ListAuditEntries(ctxAdmin, &eventsv1.ListAuditEntriesRequest{PageSize: 1000})
		if err != nil {
			return false
		}
		var ok, failed bool
		for _, e := range resp.GetEntries() {
			if !strings.HasSuffix(e.GetAction(), "/RestoreIdentity") || e.GetResourceId() != back {
				continue
			}
			ok = ok || e.GetResult() == eventsv1.AuditResult_AUDIT_RESULT_SUCCESS
			failed = failed || e.GetResult() == eventsv1.AuditResult_AUDIT_RESULT_ERROR
		}
		return ok && failed
	}, 15*time.Second, 100*time.Millisecond)
}
