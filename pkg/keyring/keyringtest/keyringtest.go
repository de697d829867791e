// Package keyringtest builds keyrings for tests: a random key-encryption key and
// short cache and grace times, over a database migrated with keyring.Migrations().
package keyringtest

import (
	"context"
	"crypto/rand"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/manushya-ai/manushya/pkg/keyring"
)

// New returns a keyring over pool with a fresh random KEK. tenants may be nil when
// no test runs the re-encryption job over tenant fields.
func New(t testing.TB, pool *pgxpool.Pool, tenants keyring.TenantLister) *keyring.Keyring {
	t.Helper()
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	kms, err := keyring.NewLocalKMS(kek)
	if err != nil {
		t.Fatalf("keyringtest: %v", err)
	}
	kr, err := keyring.New(keyring.Options{
		Pool: pool, KMS: kms, Logger: slog.New(slog.DiscardHandler), RetireGrace: time.Millisecond, Tenants: tenants,
	})
	if err != nil {
		t.Fatalf("keyringtest: %v", err)
	}
	return kr
}

// Tenants is a TenantLister over a fixed list, for tests.
func Tenants(ids ...uuid.UUID) keyring.TenantLister {
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	return func(_ context.Context, after uuid.UUID, limit int) ([]uuid.UUID, error) {
		var out []uuid.UUID
		for _, id := range sorted {
			if id.String() > after.String() && len(out) < limit {
				out = append(out, id)
			}
		}
		return out, nil
	}
}
