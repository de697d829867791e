package memory

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// LeakproofSQL marks the operators of keyword search (tsvector @@ tsquery) and
// metadata filters (jsonb @>) LEAKPROOF. Under row-level security PostgreSQL uses
// an index for a condition only if its function is leakproof, so without this the
// GIN indexes on memories.tsv and memories.metadata are never used and keyword
// searches and metadata filters read the tenant's whole scope. Neither function
// raises data-dependent errors. Only a superuser may run it, once per database
// (provisioning, not a migration, which runs as the schema owner).
const LeakproofSQL = `ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF;
ALTER FUNCTION pg_catalog.jsonb_contains(jsonb, jsonb) LEAKPROOF;`

// MarkLeakproof runs LeakproofSQL on a superuser pool.
func MarkLeakproof(ctx context.Context, superuser *pgxpool.Pool) error {
	_, err := superuser.Exec(ctx, LeakproofSQL)
	return err
}
