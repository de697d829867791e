// Package store is the usage service's PostgreSQL storage: rate limits, raw usage
// events (partitioned by month), per-minute and per-day rollups, and quotas.
// Simple queries live in queries/queries.sql and are compiled by sqlc into
// store/sqlc; the batch statements of ingestion, aggregation and the summary are
// written out in this package (data-modifying CTEs over unnest arrays, which is
// where the throughput comes from).
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
	"github.com/manushya-ai/manushya/services/usage/store/sqlc"
)

// Schema is the usage service's PostgreSQL schema.
const Schema = "usage"

var (
	// ErrNotFound is returned when no row matches in the transaction's tenant.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists is returned when a unique key is taken.
	ErrAlreadyExists = errors.New("already exists")
)

// Store opens transactions on the usage schema.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a store on pool, which must be connected as the application role.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool is the pool the store works on.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Tx is one transaction: the sqlc queries plus the outbox of the same transaction.
type Tx struct {
	*sqlc.Queries
	tx pgx.Tx
}

// Raw is the underlying transaction, for the hand-written statements.
func (t *Tx) Raw() pgx.Tx { return t.tx }

// Emit writes events to the outbox; they are published only if the transaction commits.
func (t *Tx) Emit(ctx context.Context, events ...bus.Event) error {
	return outbox.Write(ctx, t.tx, Schema, events...)
}

// InTenant runs fn in a transaction that sees only tenantID's rows (and, for rate
// limits, the global defaults).
func (s *Store) InTenant(ctx context.Context, tenantID uuid.UUID, fn func(*Tx) error) error {
	return mapErr(postgres.InTenantTx(ctx, s.pool, tenantID.String(), func(tx pgx.Tx) error {
		return fn(&Tx{Queries: sqlc.New(tx), tx: tx})
	}))
}

// InGlobal runs fn in a transaction bound to no tenant: only global rate limits are
// visible and writable.
func (s *Store) InGlobal(ctx context.Context, fn func(*Tx) error) error {
	return mapErr(postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(&Tx{Queries: sqlc.New(tx), tx: tx})
	}))
}

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
