package pgtest_test

import (
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
)

var kvMigrations = postgres.Migrations{Schema: "pgtestkv", FS: fstest.MapFS{
	"00001_kv.sql": {Data: []byte(`-- +goose Up
CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL);
-- +goose Down
DROP TABLE kv;
`)},
}}

func databaseExists(t *testing.T, db *pgtest.DB, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db.AdminURL)
	require.NoError(t, err)
	defer func() { _ = conn.Close(t.Context()) }()
	var exists bool
	require.NoError(t, conn.QueryRow(t.Context(),
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists))
	return exists
}

func TestNewGivesEachTestItsOwnDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	first := pgtest.New(t, kvMigrations)
	second := pgtest.New(t, kvMigrations)
	require.NotEqual(t, first.Name, second.Name)

	_, err := first.Pool.Exec(ctx, "INSERT INTO pgtestkv.kv VALUES ('k', 'v')")
	require.NoError(t, err)
	var n int
	require.NoError(t, second.Pool.QueryRow(ctx, "SELECT count(*) FROM pgtestkv.kv").Scan(&n))
	require.Zero(t, n)
}

func TestNewConnectsAsAppRoleWithVector(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, kvMigrations)

	var user, dbName string
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &dbName))
	require.Equal(t, pgtest.AppRole, user)
	require.Equal(t, db.Name, dbName)
	require.NoError(t, postgres.CheckAppRole(ctx, db.Pool))
	require.NoError(t, postgres.CheckSchema(ctx, db.Pool, kvMigrations))

	var distance float64
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector").Scan(&distance))
	require.InDelta(t, 1.0, distance, 1e-9)

	owner, err := pgx.Connect(ctx, db.OwnerURL)
	require.NoError(t, err)
	defer func() { _ = owner.Close(ctx) }()
	require.NoError(t, owner.QueryRow(ctx, "SELECT current_user").Scan(&user))
	require.Equal(t, pgtest.OwnerRole, user)
}

func TestNewDropsTheDatabaseAfterTheTest(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("user", func(t *testing.T) {
		db := pgtest.New(t)
		name = db.Name
		// A connection left open must not stop the drop.
		conn, err := pgx.Connect(t.Context(), db.AppURL)
		require.NoError(t, err)
		_ = conn
	})
	probe := pgtest.New(t)
	require.False(t, databaseExists(t, probe, name), "database %s should be gone", name)
}
