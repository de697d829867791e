// Package store is the memory service's PostgreSQL storage: memories, their version
// history, and the work queues of the background sweepers.
//
// Static statements live in queries/queries.sql and are compiled by sqlc into
// store/sqlc. Reads of memory rows are written here by hand: list, search and bulk
// delete compose their WHERE clause from the filter grammar and the search mode at
// run time, which sqlc cannot express, and every read shares one column list and
// one scanner (Columns, Scan) so that all of them return the same Memory. Values
// always travel as parameters.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/outbox"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/services/memory/store/sqlc"
)

// Schema is the memory service's PostgreSQL schema.
const Schema = "memory"

// Dimensions is the size of the stored vectors (the column is vector(384)).
const Dimensions = 384

// Embedding statuses as stored (the values of memoryv1.EmbeddingStatus).
const (
	StatusPending int16 = 1
	StatusReady   int16 = 2
	StatusFailed  int16 = 3
)

var (
	// ErrNotFound is returned when no row matches in the transaction's tenant.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists is returned when a unique key (the idempotency key) is taken.
	ErrAlreadyExists = errors.New("already exists")
)

// Live is the predicate of a memory every ordinary read may return: not
// soft-deleted and not expired. Expiry is checked against the clock, so an expired
// memory vanishes at once, before the sweeper purges it.
const Live = "m.delete_time IS NULL AND (m.expire_time IS NULL OR m.expire_time > now())"

// NotExpired is Live without the deletion test (reads with include_deleted).
const NotExpired = "(m.expire_time IS NULL OR m.expire_time > now())"

// Columns is the column list of every memory read, for the alias m.
const Columns = `m.id, m.tenant_id, m.identity_id, m.agent_id, m.session_id, m.text, m.type,
m.metadata, m.version, m.embedding_model, m.embedding_status, m.embedding_error,
m.expire_time, m.create_time, m.update_time, m.delete_time, m.text_sealed`

// Memory is one memory row, without its vector.
type Memory struct {
	ID              uuid.UUID
	TenantID        uuid.UUID
	IdentityID      uuid.UUID
	AgentID         *uuid.UUID
	SessionID       *string
	Text            string
	Type            string
	Metadata        []byte
	Version         int32
	EmbeddingModel  string
	EmbeddingStatus int16
	EmbeddingError  string
	ExpireTime      *time.Time
	CreateTime      time.Time
	UpdateTime      time.Time
	DeleteTime      *time.Time
	// TextSealed is the text sealed by the keyring (tenants with encrypt_text);
	// Text is empty then until the service opens it.
	TextSealed []byte
}

// ScanDest returns the scan targets of Columns, followed by extra.
func (m *Memory) ScanDest(extra ...any) []any {
	return append([]any{
		&m.ID, &m.TenantID, &m.IdentityID, &m.AgentID, &m.SessionID, &m.Text, &m.Type,
		&m.Metadata, &m.Version, &m.EmbeddingModel, &m.EmbeddingStatus, &m.EmbeddingError,
		&m.ExpireTime, &m.CreateTime, &m.UpdateTime, &m.DeleteTime, &m.TextSealed,
	}, extra...)
}

// Store opens transactions on the memory schema.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a store on pool, which must be connected as the application role.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool is the underlying pool (for the cross-tenant work queues).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Tx is one transaction: the sqlc queries, the raw transaction for hand-written
// reads, and the outbox of the same transaction. In a search (InSearch) it has no
// transaction: Tx is nil, and each statement runs on its own.
type Tx struct {
	*sqlc.Queries
	Tx pgx.Tx
	db sqlc.DBTX // what Query and Rows run on: Tx, or a search's statements
}

// Emit writes events to the outbox; they are published only if the transaction commits.
func (t *Tx) Emit(ctx context.Context, events ...bus.Event) error {
	return outbox.Write(ctx, t.Tx, Schema, events...)
}

// Savepoint runs fn in a nested transaction, so a failing item of a bulk call rolls
// back alone.
func (t *Tx) Savepoint(ctx context.Context, fn func(*Tx) error) error {
	sp, err := t.Tx.Begin(ctx)
	if err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if err := fn(&Tx{Queries: t.WithTx(sp), Tx: sp}); err != nil {
		_ = sp.Rollback(ctx)
		return mapErr(err)
	}
	return sp.Commit(ctx)
}

// Get reads one memory of the transaction's tenant, whatever its state; with
// forUpdate the row is locked until the transaction ends.
func (t *Tx) Get(ctx context.Context, id uuid.UUID, forUpdate bool) (Memory, error) {
	q := "SELECT " + Columns + " FROM memory.memories m WHERE m.id = $1"
	if forUpdate {
		q += " FOR UPDATE"
	}
	var m Memory
	if err := t.Tx.QueryRow(ctx, q, id).Scan(m.ScanDest()...); err != nil {
		return Memory{}, mapErr(err)
	}
	return m, nil
}

// Query runs a hand-built read whose first columns are Columns, scanning each row
// into a Memory and the extra destinations that extra returns for it.
func (t *Tx) Query(ctx context.Context, sql string, args []any, extra func() []any, each func(Memory)) error {
	rows, err := t.Rows(ctx, sql, args...)
	if err != nil {
		return mapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var m Memory
		var dest []any
		if extra != nil {
			dest = extra()
		}
		if err := rows.Scan(m.ScanDest(dest...)...); err != nil {
			return fmt.Errorf("scan memory: %w", err)
		}
		each(m)
	}
	return mapErr(rows.Err())
}

// Rows runs a hand-built read and returns its rows as they come.
func (t *Tx) Rows(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.db != nil {
		return t.db.Query(ctx, sql, args...)
	}
	return t.Tx.Query(ctx, sql, args...)
}

// InTenant runs fn in a transaction that sees only tenantID's rows.
func (s *Store) InTenant(ctx context.Context, tenantID uuid.UUID, fn func(*Tx) error) error {
	return mapErr(postgres.InTenantTx(ctx, s.pool, tenantID.String(), func(tx pgx.Tx) error {
		return fn(&Tx{Queries: sqlc.New(tx), Tx: tx})
	}))
}

// Global returns queries outside any tenant, for the sweepers' work queues (which
// hold ids only and carry no RLS).
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
		return ErrNotFound
	case postgres.IsUniqueViolation(err):
		return fmt.Errorf("%w: %s", ErrAlreadyExists, postgres.ConstraintName(err))
	}
	return err
}
