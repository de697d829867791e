// Package store is the webhooks service's PostgreSQL storage: recorded events,
// webhook endpoints, deliveries, their queue and their attempts. Queries live in
// queries/queries.sql and are compiled by sqlc into store/sqlc; this package wraps
// them in tenant-scoped transactions and maps database errors to sentinel errors.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/outbox"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

// Schema is the webhooks service's PostgreSQL schema.
const Schema = "webhooks"

// Partitioned tables, by day.
const (
	TableEvents   = "events"
	TableAttempts = "attempts"
)

var (
	// ErrNotFound is returned when no row matches in the transaction's tenant.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists is returned when a unique key is taken.
	ErrAlreadyExists = errors.New("already exists")
)

// Store opens transactions on the webhooks schema.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a store on pool, which must be connected as the application role.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool is the connection pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Tx is one transaction: the sqlc queries plus the outbox of the same transaction.
type Tx struct {
	*sqlc.Queries
	tx pgx.Tx
}

// Emit writes events to the outbox; they are published only if the transaction commits.
func (t *Tx) Emit(ctx context.Context, events ...bus.Event) error {
	return outbox.Write(ctx, t.tx, Schema, events...)
}

// InTenant runs fn in a transaction that sees only tenantID's rows.
func (s *Store) InTenant(ctx context.Context, tenantID uuid.UUID, fn func(*Tx) error) error {
	return mapErr(postgres.InTenantTx(ctx, s.pool, tenantID.String(), func(tx pgx.Tx) error {
		return fn(&Tx{Queries: sqlc.New(tx), tx: tx})
	}))
}

// InGlobal runs fn in a transaction without a tenant: only the tables without RLS
// (the delivery queue, the outbox) are visible.
func (s *Store) InGlobal(ctx context.Context, fn func(*Tx) error) error {
	return mapErr(postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(&Tx{Queries: sqlc.New(tx), tx: tx})
	}))
}

// Global returns queries outside any transaction, for the tables without RLS.
func (s *Store) Global() *sqlc.Queries { return sqlc.New(s.pool) }

// Day is t's UTC day as a date parameter.
func Day(t time.Time) pgtype.Date {
	y, m, d := t.UTC().Date()
	return pgtype.Date{Time: time.Date(y, m, d, 0, 0, 0, 0, time.UTC), Valid: true}
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

// DayPartition returns the parameters that create table's partition of t's day.
func DayPartition(table string, t time.Time) sqlc.EnsureDayPartitionParams {
	return sqlc.EnsureDayPartitionParams{Parent: table, Day: Day(t)}
}
