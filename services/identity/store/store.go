// Package store is the identity service's PostgreSQL storage: tenants, identities and
// API keys. Queries live in queries/queries.sql and are compiled by sqlc into
// store/sqlc; this package wraps them in tenant-scoped transactions and maps database
// errors to the sentinel errors below.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/outbox"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// Schema is the identity service's PostgreSQL schema.
const Schema = "identity"

var (
	// ErrNotFound is returned when no row matches in the transaction's tenant.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists is returned when a unique key (slug, external_id, prefix) is taken.
	ErrAlreadyExists = errors.New("already exists")
)

// Store opens transactions on the identity schema.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a store on pool, which must be connected as the application role.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Tx is one transaction: the sqlc queries plus the outbox of the same transaction.
type Tx struct {
	*sqlc.Queries
	tx pgx.Tx
}

// Emit writes events to the outbox; they are published only if the transaction commits.
func (t *Tx) Emit(ctx context.Context, events ...bus.Event) error {
	return outbox.Write(ctx, t.tx, Schema, events...)
}

// Savepoint runs fn in a nested transaction, so a failing item of a bulk call rolls
// back alone.
func (t *Tx) Savepoint(ctx context.Context, fn func(*Tx) error) error {
	sp, err := t.tx.Begin(ctx)
	if err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if err := fn(&Tx{Queries: t.WithTx(sp), tx: sp}); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

// InTenant runs fn in a transaction that sees only tenantID's rows.
func (s *Store) InTenant(ctx context.Context, tenantID uuid.UUID, fn func(*Tx) error) error {
	return mapErr(postgres.InTenantTx(ctx, s.pool, tenantID.String(), func(tx pgx.Tx) error {
		return fn(&Tx{Queries: sqlc.New(tx), tx: tx})
	}))
}

// InGlobal runs fn in a transaction without a tenant: only the tables that are not
// tenant-scoped (tenants, API key prefixes) are visible.
func (s *Store) InGlobal(ctx context.Context, fn func(*Tx) error) error {
	return mapErr(postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(&Tx{Queries: sqlc.New(tx), tx: tx})
	}))
}

// Global returns queries outside any transaction, for single reads of global tables.
func (s *Store) Global() *sqlc.Queries { return sqlc.New(s.pool) }

// MapErr converts driver errors to the sentinel errors of this package.
func MapErr(err error) error { return mapErr(err) }

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrAlreadyExists):
		return err
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case postgres.IsUniqueViolation(err):
		return fmt.Errorf("%w: %w", ErrAlreadyExists, err)
	}
	return err
}
