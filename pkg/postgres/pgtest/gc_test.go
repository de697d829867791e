package pgtest

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

func TestCollectGarbageDropsOnlyOldDatabases(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base, err := baseURL()
	require.NoError(t, err)
	conn, err := connect(ctx, base.String())
	require.NoError(t, err)
	t.Cleanup(func() { closeConn(conn) }) // after the drops below, which use it

	old := commentPrefix + time.Now().Add(-30*24*time.Hour).UTC().Format(time.RFC3339)
	fresh := commentPrefix + time.Now().UTC().Format(time.RFC3339)
	oldClone := clonePrefix + "gc" + randomHex(6)
	freshClone := clonePrefix + "gc" + randomHex(6)
	oldTemplate := templatePrefix + randomHex(8)
	for name, comment := range map[string]string{oldClone: old, freshClone: fresh, oldTemplate: old} {
		// The template is made a template as it is created: once its "old" comment
		// is set, another test process's collector may drop it at any moment, so
		// nothing may touch it after the comment.
		create := "CREATE DATABASE " + ident(name)
		if name == oldTemplate {
			create += " IS_TEMPLATE true ALLOW_CONNECTIONS false"
		}
		_, err := conn.Exec(ctx, create)
		require.NoError(t, err)
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			defer cancel()
			_, _ = conn.Exec(cctx, "DROP DATABASE IF EXISTS "+ident(name))
		})
		_, err = conn.Exec(ctx, "COMMENT ON DATABASE "+ident(name)+" IS "+literal(comment))
		require.NoError(t, err)
	}
	collectGarbage(ctx, t, conn)

	for name, want := range map[string]bool{oldClone: false, freshClone: true, oldTemplate: false} {
		exists, err := databaseExists(ctx, conn, name)
		require.NoError(t, err)
		require.Equal(t, want, exists, name)
	}
}

func TestFingerprintFollowsContent(t *testing.T) {
	t.Parallel()
	set := func(schema, body string) postgres.Migrations {
		return postgres.Migrations{Schema: schema, FS: fstest.MapFS{"00001_a.sql": {Data: []byte(body)}}}
	}
	hash := func(sets ...postgres.Migrations) string {
		h, err := fingerprint(sets)
		require.NoError(t, err)
		require.Len(t, h, 16)
		return h
	}

	base := hash(set("a", "x"))
	require.Equal(t, base, hash(set("a", "x")))
	require.NotEqual(t, base, hash(set("b", "x")))
	require.NotEqual(t, base, hash(set("a", "y")))
	require.NotEqual(t, base, hash())
}
