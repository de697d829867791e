package webhooks_test

import (
	"context"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/erasure"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
)

// identity.erased removes the stored events about the identity with their
// deliveries and attempts, reports the counts, and leaves other identities'
// events; tenant.erased empties the tenant, endpoints included.
func TestErasureRemovesEventsAndDeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(srv.Close)
	_, err := b.hooks.CreateWebhook(as(tenantA), &webhooksv1.CreateWebhookRequest{Name: "mem", Url: srv.URL + "/hook", Events: []string{"memory.created"}})
	require.NoError(t, err)
	conn, err := pgxpool.New(ctx, b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(conn.Close)
	count := func(sql string, args ...any) int64 {
		t.Helper()
		var n int64
		if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			return -1 // inside Eventually: no FailNow off the test goroutine
		}
		return n
	}

	erased, kept := uuid.NewString(), uuid.NewString()
	b.publish(t, tenantA, "memory.created", map[string]string{"identity_id": erased, "text": "a secret of the erased"})
	b.publish(t, tenantA, "memory.created", map[string]string{"identity_id": erased, "text": "another secret"})
	b.publish(t, tenantA, "memory.created", map[string]string{"identity_id": kept, "text": "someone else's"})
	require.Eventually(t, func() bool {
		return count(`SELECT count(*) FROM webhooks.events WHERE type = 'memory.created'`) == 3 &&
			count(`SELECT count(*) FROM webhooks.deliveries`) == 3 && count(`SELECT count(*) FROM webhooks.attempts`) == 3
	}, 10*time.Second, 20*time.Millisecond)

	erasureID := uuid.NewString()
	b.publish(t, tenantA, erasure.EventIdentityErased, erasure.Erased{ErasureID: erasureID, IdentityID: erased})
	require.Eventually(t, func() bool {
		// The report goes out through the outbox and comes back into the store.
		return count(`SELECT count(*) FROM webhooks.events WHERE type = 'erasure.progress'`) == 1
	}, 10*time.Second, 20*time.Millisecond)
	var report string
	require.NoError(t, conn.QueryRow(ctx, `SELECT data::text FROM webhooks.events WHERE type = 'erasure.progress'`).Scan(&report))
	require.JSONEq(t, `{"erasure_id": "`+erasureID+`", "service": "webhooks", "counts": [
		{"kind": "events", "count": 2}, {"kind": "webhook_deliveries", "count": 2}, {"kind": "webhook_attempts", "count": 2},
		{"kind": "stream_events", "count": 2}]}`, report)
	// The stream's copies are gone from its files on disk (a secure delete
	// overwrites them), while the other identity's event is still there.
	onDisk := streamFiles(t, b.natsDir)
	require.NotContains(t, onDisk, "a secret of the erased")
	require.NotContains(t, onDisk, "another secret")
	require.Contains(t, onDisk, "someone else's")
	require.Zero(t, count(`SELECT count(*) FROM webhooks.events WHERE data::text LIKE '%secret%' AND data ->> 'identity_id' = $1`, erased))
	require.EqualValues(t, 1, count(`SELECT count(*) FROM webhooks.events WHERE data ->> 'identity_id' = $1`, kept))
	require.EqualValues(t, 1, count(`SELECT count(*) FROM webhooks.deliveries`))
	require.EqualValues(t, 1, count(`SELECT count(*) FROM webhooks.attempts`))

	b.publish(t, tenantA, erasure.EventTenantErased, erasure.Erased{ErasureID: uuid.NewString(), TenantID: tenantA})
	require.Eventually(t, func() bool {
		return count(`SELECT count(*) FROM webhooks.endpoints`) == 0
	}, 10*time.Second, 20*time.Millisecond)
	require.Zero(t, count(`SELECT count(*) FROM webhooks.endpoints WHERE tenant_id = $1`, uuid.MustParse(tenantA)))
	require.Zero(t, count(`SELECT count(*) FROM webhooks.deliveries`))
	require.Zero(t, count(`SELECT count(*) FROM webhooks.events WHERE type = 'memory.created'`))
}

// streamFiles is every file NATS keeps under dir, concatenated: what a backup of
// the server's storage would hold.
func streamFiles(t *testing.T, dir string) string {
	t.Helper()
	var all strings.Builder
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		all.Write(b)
		return nil
	}))
	return all.String()
}
