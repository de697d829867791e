// Package store is the policy service's PostgreSQL storage: the current version of
// each policy and every version before it. Queries live in queries/ and are compiled
// by sqlc into store/sqlc; this package wraps them in tenant-scoped transactions,
// writes the built-in baselines into a tenant on first use, and maps database errors
// to the sentinel errors below.
package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/outbox"
	"github.com/manushya-ai/manushya/pkg/policyengine"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/services/policy/store/sqlc"
)

// Schema is the policy service's PostgreSQL schema.
const Schema = "policy"

var (
	// ErrNotFound is returned when no row matches in the transaction's tenant.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists is returned when a policy name is taken in the tenant.
	ErrAlreadyExists = errors.New("already exists")
)

// Store opens transactions on the policy schema.
type Store struct {
	pool *pgxpool.Pool

	seeded sync.Map // tenant id -> struct{}: baselines known to be written
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

// InTenant runs fn in a transaction that sees only tenantID's rows, after making
// sure the tenant has its built-in policies.
func (s *Store) InTenant(ctx context.Context, tenantID uuid.UUID, fn func(*Tx) error) error {
	if err := s.ensureBaseline(ctx, tenantID); err != nil {
		return err
	}
	return mapErr(postgres.InTenantTx(ctx, s.pool, tenantID.String(), func(tx pgx.Tx) error {
		return fn(&Tx{Queries: sqlc.New(tx), tx: tx})
	}))
}

// ensureBaseline writes the built-in policies a tenant lacks, once per process and
// tenant; concurrent writers are harmless (ON CONFLICT DO NOTHING).
func (s *Store) ensureBaseline(ctx context.Context, tenantID uuid.UUID) error {
	if _, ok := s.seeded.Load(tenantID); ok {
		return nil
	}
	err := postgres.InTenantTx(ctx, s.pool, tenantID.String(), func(tx pgx.Tx) error {
		q := sqlc.New(tx)
		now := time.Now()
		for _, p := range policyengine.Baseline() {
			id, err := uuid.NewV7()
			if err != nil {
				return err
			}
			n, err := q.InsertBuiltinPolicy(ctx, sqlc.InsertBuiltinPolicyParams{
				ID: id, TenantID: tenantID, Name: p.Name, Description: p.Description, Source: p.Source,
				Resource: p.Resource, Actions: p.Actions, Effect: string(p.Effect), Priority: p.Priority, Roles: nonNil(p.Roles),
			})
			if err != nil {
				return fmt.Errorf("write built-in policy %s: %w", p.Name, err)
			}
			if n == 0 {
				continue
			}
			if err := q.InsertPolicyVersion(ctx, sqlc.InsertPolicyVersionParams{
				PolicyID: id, TenantID: tenantID, Version: 1, Name: p.Name, Description: p.Description,
				Language: string(p.Language), Source: p.Source, Resource: p.Resource, Actions: p.Actions,
				Effect: string(p.Effect), Priority: p.Priority, Enabled: true, Roles: nonNil(p.Roles), Builtin: true,
				ChangedFields: []string{}, PolicyCreateTime: now,
			}); err != nil {
				return fmt.Errorf("write built-in policy %s version: %w", p.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.seeded.Store(tenantID, struct{}{})
	return nil
}

// LoadPolicies returns every policy of a tenant as the engine takes them; a
// built-in the tenant has no row for yet is added as shipped. It implements
// policyengine.Loader with a read-only transaction.
func (s *Store) LoadPolicies(ctx context.Context, tenantID string) ([]policyengine.Policy, error) {
	var rows []sqlc.PolicyPolicy
	err := postgres.InTenantTx(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		var err error
		rows, err = sqlc.New(tx).AllPolicies(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load policies of tenant %s: %w", tenantID, err)
	}
	out := make([]policyengine.Policy, 0, len(rows)+8)
	have := map[string]bool{}
	for _, r := range rows {
		out = append(out, ToEngine(r))
		have[r.Name] = true
	}
	for _, b := range policyengine.Baseline() {
		if !have[b.Name] {
			out = append(out, b)
		}
	}
	return out, nil
}

// ToEngine converts a row to the engine's form. A built-in row takes the shipped
// source, description and scope (see policyengine.ShippedBaseline): rows written
// by an earlier version keep only their tenant's priority and enabled flag.
func ToEngine(r sqlc.PolicyPolicy) policyengine.Policy {
	p := policyengine.Policy{
		ID: r.ID.String(), Name: r.Name, Description: r.Description, Language: policyengine.Language(r.Language),
		Source: r.Source, Resource: r.Resource, Actions: r.Actions, Effect: policyengine.Effect(r.Effect),
		Priority: r.Priority, Enabled: r.Enabled, Roles: r.Roles, Version: r.Version, Builtin: r.Builtin,
	}
	if r.Builtin {
		if b, ok := policyengine.ShippedBaseline(r.Name); ok {
			p.Description, p.Language, p.Source = b.Description, b.Language, b.Source
			p.Resource, p.Actions, p.Effect, p.Roles = b.Resource, b.Actions, b.Effect, b.Roles
		}
	}
	return p
}

// Shipped returns r with a built-in's shipped definition (see ToEngine), for
// answers that show the policy.
func Shipped(r sqlc.PolicyPolicy) sqlc.PolicyPolicy {
	if !r.Builtin {
		return r
	}
	p := ToEngine(r)
	r.Description, r.Language, r.Source = p.Description, string(p.Language), p.Source
	r.Resource, r.Actions, r.Effect, r.Roles = p.Resource, p.Actions, string(p.Effect), nonNil(p.Roles)
	return r
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
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
