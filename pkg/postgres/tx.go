package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TenantSetting is the transaction-local setting (GUC) the row-level security policies
// read the current tenant from.
const TenantSetting = "manushya.tenant_id"

// tenantPredicate is the condition of every tenant_isolation policy. NULLIF maps the
// empty string PostgreSQL reports for a setting once defined in the session, but not
// in this transaction, to NULL, which matches no row.
const tenantPredicate = "tenant_id = NULLIF(current_setting('" + TenantSetting + "', true), '')::uuid"

// ErrInvalidTenantID is returned by InTenantTx for a tenant id that is not a UUID.
var ErrInvalidTenantID = errors.New("tenant id is not a valid UUID")

// rollbackTimeout bounds a rollback that runs after the caller's context is done.
const rollbackTimeout = 5 * time.Second

// InTx runs fn in a transaction, committing when fn returns nil and rolling back when it
// returns an error or panics. fn's error is returned as is, so sentinel errors from
// stores pass through.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return inTx(ctx, pool, "", fn)
}

// InTenantTx is InTx with the transaction bound to a tenant: it sets TenantSetting to
// tenantID first, so row-level security lets only that tenant's rows be read or
// written. tenantID must be a UUID, else the error wraps ErrInvalidTenantID and fn does
// not run.
func InTenantTx(ctx context.Context, pool *pgxpool.Pool, tenantID string, fn func(pgx.Tx) error) error {
	id, err := uuid.Parse(tenantID)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidTenantID, tenantID)
	}
	return inTx(ctx, pool, id.String(), fn)
}

func inTx(ctx context.Context, pool *pgxpool.Pool, tenantID string, fn func(pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	finished := false
	defer func() {
		// Reached without finishing only when fn panicked; the panic goes on after this.
		if !finished {
			rollback(ctx, tx)
		}
	}()

	if tenantID != "" {
		// is_local = true: the setting ends with the transaction, so a pooled
		// connection never carries a tenant into the next request.
		if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", TenantSetting, tenantID); err != nil {
			finished = true
			rollback(ctx, tx)
			return fmt.Errorf("set tenant %s: %w", tenantID, err)
		}
	}
	if err := fn(tx); err != nil {
		finished = true
		rollback(ctx, tx)
		return err
	}
	finished = true
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// rollback ends tx even when ctx is already cancelled, which is a common reason for fn
// to have failed; a failure only means the connection is broken, and pgx then discards
// it, so it is logged rather than returned over fn's own error.
func rollback(ctx context.Context, tx pgx.Tx) {
	rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if err := tx.Rollback(rbCtx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		slog.WarnContext(ctx, "transaction rollback failed", "err", err)
	}
}

// RLSPolicySQL returns the statements that put schema.table under tenant isolation:
// row-level security enabled and forced (so the owner is filtered too) and a
// tenant_isolation policy admitting, for reads and writes alike, only rows whose
// tenant_id equals TenantSetting. Migrations write these statements out; this is the
// reference they follow.
func RLSPolicySQL(schema, table string) string {
	name := pgx.Identifier{schema, table}.Sanitize()
	return fmt.Sprintf(`ALTER TABLE %[1]s ENABLE ROW LEVEL SECURITY;
ALTER TABLE %[1]s FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON %[1]s
    USING (%[2]s)
    WITH CHECK (%[2]s);
`, name, tenantPredicate)
}
