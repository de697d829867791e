package keyring_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/postgres"
)

// Sealing and opening a 32-byte secret with the data key cached (the steady state):
// an AES-256-GCM operation, a cache lookup and the associated data.
func BenchmarkSealOpen(b *testing.B) {
	bb := setup(b)
	ctx := context.Background()
	r := ref(uuid.New(), uuid.New(), uuid.New())
	secret := make([]byte, 32)
	c, err := bb.kr.Seal(ctx, r, secret)
	require.NoError(b, err)
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bb.kr.Seal(ctx, r, secret); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bb.kr.Open(ctx, r, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := bb.kr.Open(ctx, r, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// Throughput of the re-encryption job: 10 identities x 500 rows sealed under their
// identities' keys, every key rotated, then one pass moves all 5,000 rows (in
// batches of 500, one transaction each).
func BenchmarkReencrypt(b *testing.B) {
	const identities, perIdentity = 10, 500
	bb := &bundle{}
	bb.db = setup(b).db
	tenant := uuid.New()
	bb.tenants = []uuid.UUID{tenant}
	// The default batch size of the job, not the tests' small one.
	kms, err := keyring.NewLocalKMS(kek(1))
	require.NoError(b, err)
	kr, err := keyring.New(keyring.Options{Pool: bb.db.Pool, KMS: kms, Logger: slog.New(slog.DiscardHandler), RetireGrace: time.Millisecond, Tenants: func(_ context.Context, after uuid.UUID, _ int) ([]uuid.UUID, error) {
		if after == uuid.Nil {
			return []uuid.UUID{tenant}, nil
		}
		return nil, nil
	}})
	require.NoError(b, err)
	require.NoError(b, kr.Register(testFields()...))
	ctx := context.Background()
	var scopes []keyring.Scope
	for range identities {
		identity := uuid.New()
		scopes = append(scopes, keyring.Identity(tenant, identity))
		ids := make([]uuid.UUID, perIdentity)
		vals := make([][]byte, perIdentity)
		for i := range ids {
			ids[i] = uuid.New()
			vals[i], err = kr.Seal(ctx, ref(tenant, identity, ids[i]), []byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
			require.NoError(b, err)
		}
		require.NoError(b, postgres.InTenantTx(ctx, bb.db.Pool, tenant.String(), func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO kt.secrets (id, tenant_id, identity_id, secret)
				SELECT unnest($1::uuid[]), $2, $3, unnest($4::bytea[])`, ids, tenant, identity, vals)
			return err
		}))
	}
	var rows int64
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		for _, s := range scopes {
			_, err := kr.Rotate(ctx, s)
			require.NoError(b, err)
		}
		b.StartTimer()
		start := time.Now()
		rep, err := kr.Reencrypt(ctx)
		elapsed += time.Since(start)
		require.NoError(b, err)
		for _, p := range rep.Fields {
			rows += p.Resealed
		}
	}
	require.Equal(b, int64(identities*perIdentity)*int64(b.N), rows)
	b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
}
