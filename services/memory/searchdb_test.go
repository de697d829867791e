package memory

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/memory/store"
)

// TestSearchStatementSettings: a search statement runs with its tenant and the
// search settings (InSearch sends them with each statement, outside any
// explicit transaction), read only, and none of it outlives the statement: the
// next user of the same pooled connection sees no tenant (row-level security
// then shows it nothing) and the server's defaults. A failing statement leaves
// the connection usable.
func TestSearchStatementSettings(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, Migrations())
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(db.AppURL)
	require.NoError(t, err)
	cfg.MaxConns = 1 // every statement below runs on the same connection
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	st := store.New(pool)

	admin, err := pgxpool.New(ctx, db.AdminURL) // superuser: row-level security does not apply
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	tenant := uuid.New()
	_, err = admin.Exec(ctx, `INSERT INTO memory.memories (id, tenant_id, identity_id, text) VALUES ($1, $2, $3, 'x')`,
		uuid.New(), tenant, uuid.New())
	require.NoError(t, err)

	type settings struct{ tenant, ef, iterative, plan, readOnly string }
	const show = `SELECT coalesce(current_setting('manushya.tenant_id', true), ''), current_setting('hnsw.ef_search'),
current_setting('hnsw.iterative_scan'), current_setting('plan_cache_mode'), current_setting('transaction_read_only')`
	var in settings
	var visible int
	err = st.InSearch(ctx, tenant, 123, func(tx *store.Tx) error {
		rows, err := tx.Rows(ctx, show)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := rows.Scan(&in.tenant, &in.ef, &in.iterative, &in.plan, &in.readOnly); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Rows(ctx, `SELECT count(*) FROM memory.memories`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := rows.Scan(&visible); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	require.NoError(t, err)
	require.Equal(t, settings{tenant.String(), "123", "relaxed_order", "force_custom_plan", "on"}, in)
	require.Equal(t, 1, visible, "the statement sees its tenant's rows")

	var after settings
	require.NoError(t, pool.QueryRow(ctx, show).Scan(&after.tenant, &after.ef, &after.iterative, &after.plan, &after.readOnly))
	require.Equal(t, settings{"", "40", "off", "auto", "off"}, after, "nothing outlives the search statement")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM memory.memories`).Scan(&visible))
	require.Zero(t, visible, "without a tenant, row-level security shows nothing")

	// Read only; a failed statement leaves the connection clean and usable.
	err = st.InSearch(ctx, tenant, 100, func(tx *store.Tx) error {
		rows, err := tx.Rows(ctx, `DELETE FROM memory.memories RETURNING id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
		}
		return rows.Err()
	})
	require.Error(t, err)
	require.Contains(t, err.Error(), "read-only transaction")
	require.NoError(t, pool.QueryRow(ctx, show).Scan(&after.tenant, &after.ef, &after.iterative, &after.plan, &after.readOnly))
	require.Equal(t, settings{"", "40", "off", "auto", "off"}, after)
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM memory.memories WHERE tenant_id = $1`, tenant).Scan(&visible))
	require.Equal(t, 1, visible, "nothing was deleted")

	// sqlc's QueryRow runs the same way (KeywordUnavailable is a search's).
	err = st.InSearch(ctx, tenant, 100, func(tx *store.Tx) error {
		v, err := tx.KeywordUnavailable(ctx, tenant)
		if err != nil {
			return err
		}
		if v == nil || *v {
			return errors.New("keyword search should be available")
		}
		return nil
	})
	require.NoError(t, err)
}
