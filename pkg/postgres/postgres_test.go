package postgres_test

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
)

//go:embed testdata/migrations/*.sql
var testdataFS embed.FS

// demoSchema is deliberately not a service's schema name.
const demoSchema = "pgdemo"

func demoMigrations(t testing.TB) postgres.Migrations {
	t.Helper()
	sub, err := fs.Sub(testdataFS, "testdata/migrations")
	require.NoError(t, err)
	return postgres.Migrations{Schema: demoSchema, FS: sub}
}

// firstMigrationOnly is the demo set as an older binary would have embedded it.
func firstMigrationOnly(t testing.TB) postgres.Migrations {
	t.Helper()
	body, err := testdataFS.ReadFile("testdata/migrations/00001_items.sql")
	require.NoError(t, err)
	return postgres.Migrations{Schema: demoSchema, FS: fstest.MapFS{"00001_items.sql": {Data: body}}}
}

func connect(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := postgres.Connect(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func countVersionRows(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM pgdemo.goose_db_version").Scan(&n))
	return n
}

func insertItem(ctx context.Context, pool *pgxpool.Pool, tenant, name string) error {
	return postgres.InTenantTx(ctx, pool, tenant, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO pgdemo.items (tenant_id, name) VALUES ($1, $2)", tenant, name)
		return err
	})
}

func itemNames(ctx context.Context, t testing.TB, tx pgx.Tx) []string {
	t.Helper()
	rows, err := tx.Query(ctx, "SELECT name FROM pgdemo.items ORDER BY name")
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	set := demoMigrations(t)

	require.NoError(t, postgres.Migrate(ctx, db.OwnerURL, pgtest.AppRole, set))
	require.NoError(t, postgres.CheckSchema(ctx, db.Pool, set))
	rows := countVersionRows(t, db.Pool)
	require.Equal(t, 3, rows, "version 0 plus two migrations")

	require.NoError(t, postgres.Migrate(ctx, db.OwnerURL, pgtest.AppRole, set))
	require.Equal(t, rows, countVersionRows(t, db.Pool), "second run must apply nothing")
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	set := demoMigrations(t)

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = postgres.Migrate(ctx, db.OwnerURL, pgtest.AppRole, set) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, postgres.CheckSchema(ctx, db.Pool, set))
	require.Equal(t, 3, countVersionRows(t, db.Pool))
}

func TestMigrateGrantsAppRoleDataAccessOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, demoMigrations(t))
	tenant := uuid.NewString()

	// The identity column needs the sequence grant.
	require.NoError(t, insertItem(ctx, db.Pool, tenant, "a"))

	var owner string
	require.NoError(t, db.Pool.QueryRow(ctx,
		"SELECT tableowner FROM pg_tables WHERE schemaname = 'pgdemo' AND tablename = 'items'").Scan(&owner))
	require.Equal(t, pgtest.OwnerRole, owner)

	_, err := db.Pool.Exec(ctx, "CREATE TABLE pgdemo.sneaky (id int)")
	require.Error(t, err, "the app role must not create tables")
	_, err = db.Pool.Exec(ctx, "DELETE FROM pgdemo.goose_db_version")
	require.Error(t, err, "the app role must not rewrite migration history")
}

func TestMigrateErrorNamesSchemaAndFile(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	broken := postgres.Migrations{Schema: "pgbroken", FS: fstest.MapFS{
		"00001_ok.sql":     {Data: []byte("-- +goose Up\nCREATE TABLE ok (id int);\n")},
		"00002_broken.sql": {Data: []byte("-- +goose Up\nCREATE TABLE nope (id no_such_type);\n")},
	}}

	err := postgres.Migrate(t.Context(), db.OwnerURL, pgtest.AppRole, broken)
	require.ErrorContains(t, err, "pgbroken")
	require.ErrorContains(t, err, "00002_broken.sql")
}

func TestMigrateRefusesAppRoleAsOwner(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)

	err := postgres.Migrate(t.Context(), db.AppURL, pgtest.AppRole, demoMigrations(t))
	require.ErrorContains(t, err, "owner role")
}

func TestMigrateRejectsBadSchemaName(t *testing.T) {
	t.Parallel()
	set := demoMigrations(t)
	set.Schema = `bad"name`

	err := postgres.Migrate(t.Context(), "postgres://nobody@127.0.0.1:1/none", pgtest.AppRole, set)
	require.ErrorContains(t, err, "invalid schema name")
}

func TestCheckSchema(t *testing.T) {
	t.Parallel()

	t.Run("current", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t, demoMigrations(t))
		require.NoError(t, postgres.CheckSchema(t.Context(), db.Pool, demoMigrations(t)))
	})

	t.Run("behind", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t, firstMigrationOnly(t))
		err := postgres.CheckSchema(t.Context(), db.Pool, demoMigrations(t))
		require.ErrorContains(t, err, "schema pgdemo is at version 1, this binary needs version 2")
		require.ErrorContains(t, err, "manushya migrate")
	})

	t.Run("ahead", func(t *testing.T) {
		t.Parallel()
		// An old binary during a rolling upgrade keeps working.
		db := pgtest.New(t, demoMigrations(t))
		require.NoError(t, postgres.CheckSchema(t.Context(), db.Pool, firstMigrationOnly(t)))
	})

	t.Run("never migrated", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		err := postgres.CheckSchema(t.Context(), db.Pool, demoMigrations(t))
		require.ErrorContains(t, err, "schema pgdemo is at version 0, this binary needs version 2")
	})
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, demoMigrations(t))
	tenantA, tenantB := uuid.NewString(), uuid.NewString()
	require.NoError(t, insertItem(ctx, db.Pool, tenantA, "a1"))
	require.NoError(t, insertItem(ctx, db.Pool, tenantA, "a2"))
	require.NoError(t, insertItem(ctx, db.Pool, tenantB, "b1"))

	t.Run("reads see only the tenant's rows", func(t *testing.T) {
		require.NoError(t, postgres.InTenantTx(ctx, db.Pool, tenantA, func(tx pgx.Tx) error {
			// No WHERE tenant_id: the policy alone filters.
			require.Equal(t, []string{"a1", "a2"}, itemNames(ctx, t, tx))
			return nil
		}))
		require.NoError(t, postgres.InTenantTx(ctx, db.Pool, tenantB, func(tx pgx.Tx) error {
			require.Equal(t, []string{"b1"}, itemNames(ctx, t, tx))
			return nil
		}))
	})

	t.Run("no tenant sees nothing", func(t *testing.T) {
		require.NoError(t, postgres.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			require.Empty(t, itemNames(ctx, t, tx))
			return nil
		}))
		// Outside any transaction, on connections that served tenants before.
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM pgdemo.items").Scan(&n))
		require.Zero(t, n)
	})

	t.Run("cannot write another tenant's rows", func(t *testing.T) {
		err := postgres.InTenantTx(ctx, db.Pool, tenantA, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO pgdemo.items (tenant_id, name) VALUES ($1, 'sneaky')", tenantB)
			return err
		})
		require.ErrorContains(t, err, "row-level security")

		err = postgres.InTenantTx(ctx, db.Pool, tenantA, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE pgdemo.items SET tenant_id = $1 WHERE name = 'a1'", tenantB)
			return err
		})
		require.ErrorContains(t, err, "row-level security")

		var touched int64
		require.NoError(t, postgres.InTenantTx(ctx, db.Pool, tenantA, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, "DELETE FROM pgdemo.items WHERE tenant_id = $1", tenantB)
			touched = tag.RowsAffected()
			return err
		}))
		require.Zero(t, touched)
	})

	t.Run("no tenant cannot write", func(t *testing.T) {
		err := postgres.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO pgdemo.items (tenant_id, name) VALUES ($1, 'orphan')", tenantA)
			return err
		})
		require.ErrorContains(t, err, "row-level security")
	})
}

func TestInTenantTxRejectsInvalidTenant(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)

	for _, tenant := range []string{"", "not-a-uuid", "'; RESET ROLE; --"} {
		called := false
		err := postgres.InTenantTx(t.Context(), db.Pool, tenant, func(pgx.Tx) error {
			called = true
			return nil
		})
		require.ErrorIs(t, err, postgres.ErrInvalidTenantID)
		require.False(t, called)
	}
}

func TestInTx(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, demoMigrations(t))
	tenant := uuid.NewString()
	count := func() int {
		var n int
		require.NoError(t, postgres.InTenantTx(ctx, db.Pool, tenant, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT count(*) FROM pgdemo.items").Scan(&n)
		}))
		return n
	}
	insert := func(tx pgx.Tx, name string) {
		_, err := tx.Exec(ctx, "INSERT INTO pgdemo.items (tenant_id, name) VALUES ($1, $2)", tenant, name)
		require.NoError(t, err)
	}

	t.Run("rolls back on error", func(t *testing.T) {
		errBoom := errors.New("boom")
		err := postgres.InTenantTx(ctx, db.Pool, tenant, func(tx pgx.Tx) error {
			insert(tx, "rolled back")
			return errBoom
		})
		require.ErrorIs(t, err, errBoom)
		require.Zero(t, count())
	})

	t.Run("rolls back on panic", func(t *testing.T) {
		require.PanicsWithValue(t, "boom", func() {
			_ = postgres.InTenantTx(ctx, db.Pool, tenant, func(tx pgx.Tx) error {
				insert(tx, "panicked")
				panic("boom")
			})
		})
		require.Zero(t, count())
	})

	t.Run("commits on success", func(t *testing.T) {
		require.NoError(t, postgres.InTenantTx(ctx, db.Pool, tenant, func(tx pgx.Tx) error {
			insert(tx, "kept")
			return nil
		}))
		require.Equal(t, 1, count())
	})

	t.Run("plain InTx rolls back on error", func(t *testing.T) {
		errBoom := errors.New("boom")
		err := postgres.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SELECT set_config('manushya.tenant_id', $1, true)", tenant)
			require.NoError(t, err)
			insert(tx, "plain")
			return errBoom
		})
		require.ErrorIs(t, err, errBoom)
		require.Equal(t, 1, count())
	})
}

func TestCheckAppRole(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)

	require.NoError(t, postgres.CheckAppRole(ctx, db.Pool))

	err := postgres.CheckAppRole(ctx, connect(t, db.AdminURL))
	require.ErrorContains(t, err, "superuser")
	require.ErrorContains(t, err, `"postgres"`)
}

func TestErrorHelpers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, demoMigrations(t))
	tenant := uuid.NewString()
	require.NoError(t, insertItem(ctx, db.Pool, tenant, "dup"))

	err := insertItem(ctx, db.Pool, tenant, "dup")
	require.True(t, postgres.IsUniqueViolation(err), "got %v", err)
	require.False(t, postgres.IsForeignKeyViolation(err))
	require.Equal(t, "items_tenant_id_name_key", postgres.ConstraintName(err))

	err = postgres.InTenantTx(ctx, db.Pool, tenant, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO pgdemo.notes (tenant_id, item_id, body) VALUES ($1, -1, 'x')", tenant)
		return err
	})
	require.True(t, postgres.IsForeignKeyViolation(err), "got %v", err)
	require.False(t, postgres.IsUniqueViolation(err))

	require.False(t, postgres.IsUniqueViolation(nil))
	require.Empty(t, postgres.ConstraintName(errors.New("plain")))
}

func TestRLSPolicySQL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	owner := connect(t, db.OwnerURL)

	_, err := owner.Exec(ctx, "CREATE SCHEMA pgpolicy; CREATE TABLE pgpolicy.things (tenant_id uuid NOT NULL)")
	require.NoError(t, err)
	_, err = owner.Exec(ctx, postgres.RLSPolicySQL("pgpolicy", "things"))
	require.NoError(t, err)

	var forced bool
	require.NoError(t, owner.QueryRow(ctx,
		"SELECT relforcerowsecurity FROM pg_class WHERE oid = 'pgpolicy.things'::regclass").Scan(&forced))
	require.True(t, forced)

	// FORCE filters the owner too.
	_, err = owner.Exec(ctx, "INSERT INTO pgpolicy.things VALUES (gen_random_uuid())")
	require.ErrorContains(t, err, "row-level security")
}

func TestConnectHidesPassword(t *testing.T) {
	t.Parallel()

	_, err := postgres.Connect(t.Context(), "postgres://user:s3cret@127.0.0.1:5432/db?pool_max_conns=nope")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}
