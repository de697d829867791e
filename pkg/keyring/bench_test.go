package keyring_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
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

// reencryptFixture is 10 identities x 500 rows sealed under their identities'
// keys, with a keyring at the job's default batch size (not the tests' small one).
type reencryptFixture struct {
	kr     *keyring.Keyring
	db     *bundle
	tenant uuid.UUID
	scopes []keyring.Scope
	rows   []rowRef
}

type rowRef struct {
	identity, id uuid.UUID
}

const benchIdentities, benchPerIdentity = 10, 500

func newReencryptFixture(b *testing.B) *reencryptFixture {
	f := &reencryptFixture{db: &bundle{}}
	f.db.db = setup(b).db
	tenant := uuid.New()
	f.tenant = tenant
	kms, err := keyring.NewLocalKMS(kek(1))
	require.NoError(b, err)
	f.kr, err = keyring.New(keyring.Options{Pool: f.db.db.Pool, KMS: kms, Logger: slog.New(slog.DiscardHandler), RetireGrace: time.Millisecond, Tenants: func(_ context.Context, after uuid.UUID, _ int) ([]uuid.UUID, error) {
		if after == uuid.Nil {
			return []uuid.UUID{tenant}, nil
		}
		return nil, nil
	}})
	require.NoError(b, err)
	require.NoError(b, f.kr.Register(testFields()...))
	ctx := context.Background()
	for range benchIdentities {
		identity := uuid.New()
		f.scopes = append(f.scopes, keyring.Identity(tenant, identity))
		ids := make([]uuid.UUID, benchPerIdentity)
		vals := make([][]byte, benchPerIdentity)
		for i := range ids {
			ids[i] = uuid.New()
			vals[i], err = f.kr.Seal(ctx, ref(tenant, identity, ids[i]), []byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
			require.NoError(b, err)
			f.rows = append(f.rows, rowRef{identity: identity, id: ids[i]})
		}
		require.NoError(b, postgres.InTenantTx(ctx, f.db.db.Pool, tenant.String(), func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO kt.secrets (id, tenant_id, identity_id, secret)
				SELECT unnest($1::uuid[]), $2, $3, unnest($4::bytea[])`, ids, tenant, identity, vals)
			return err
		}))
	}
	return f
}

func (f *reencryptFixture) rotateAll(b *testing.B) {
	for _, s := range f.scopes {
		_, err := f.kr.Rotate(context.Background(), s)
		require.NoError(b, err)
	}
}

// Throughput of the re-encryption job: every key rotated, then one pass moves all
// 5,000 rows (in batches of 500, one transaction each).
func BenchmarkReencrypt(b *testing.B) {
	f := newReencryptFixture(b)
	ctx := context.Background()
	var rows int64
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		f.rotateAll(b)
		b.StartTimer()
		start := time.Now()
		rep, err := f.kr.Reencrypt(ctx)
		elapsed += time.Since(start)
		require.NoError(b, err)
		for _, p := range rep.Fields {
			rows += p.Resealed
		}
	}
	require.Equal(b, int64(benchIdentities*benchPerIdentity)*int64(b.N), rows)
	b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
}

// The job's throughput while normal traffic runs, and that traffic's p99 with the
// job running and without it, in the same run: two clients read a sealed row
// (a tenant transaction, one SELECT) and open it, back to back. Each iteration
// rotates every key, measures the traffic alone for as long as the previous pass
// took (at least 200 ms), then runs the pass with the traffic on.
func BenchmarkReencryptWithTraffic(b *testing.B) {
	const clients = 2
	f := newReencryptFixture(b)
	ctx := context.Background()
	read := func(r rowRef) error {
		var c []byte
		err := postgres.InTenantTx(ctx, f.db.db.Pool, f.tenant.String(), func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT secret FROM kt.secrets WHERE id = $1`, r.id).Scan(&c)
		})
		if err != nil {
			return err
		}
		_, err = f.kr.Open(ctx, ref(f.tenant, r.identity, r.id), c)
		return err
	}
	// traffic runs the clients until stop closes and returns every latency.
	traffic := func(stop <-chan struct{}) []time.Duration {
		var mu sync.Mutex
		var all []time.Duration
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for i := c; ; i += clients {
					select {
					case <-stop:
						mu.Lock()
						all = append(all, mine...)
						mu.Unlock()
						return
					default:
					}
					start := time.Now()
					if err := read(f.rows[(i*7919)%len(f.rows)]); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(start))
				}
			}()
		}
		<-stop
		wg.Wait()
		return all
	}
	var rows int64
	var elapsed time.Duration
	var idle, busy []time.Duration
	var idleTime time.Duration
	last := 200 * time.Millisecond
	for b.Loop() {
		b.StopTimer()
		f.rotateAll(b)
		stop := make(chan struct{})
		done := make(chan []time.Duration)
		go func() { done <- traffic(stop) }()
		window := max(last, 200*time.Millisecond)
		time.Sleep(window)
		idleTime += window
		close(stop)
		idle = append(idle, <-done...)

		stop = make(chan struct{})
		go func() { done <- traffic(stop) }()
		b.StartTimer()
		start := time.Now()
		rep, err := f.kr.Reencrypt(ctx)
		last = time.Since(start)
		b.StopTimer()
		close(stop)
		busy = append(busy, <-done...)
		elapsed += last
		require.NoError(b, err)
		for _, p := range rep.Fields {
			rows += p.Resealed
		}
		b.StartTimer()
	}
	require.Equal(b, int64(benchIdentities*benchPerIdentity)*int64(b.N), rows)
	b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(p99(idle).Microseconds()), "p99-idle-µs")
	b.ReportMetric(float64(p99(busy).Microseconds()), "p99-during-µs")
	b.ReportMetric(float64(len(idle))/idleTime.Seconds(), "reads/s-idle")
	b.ReportMetric(float64(len(busy))/elapsed.Seconds(), "reads/s-during")
}

func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[(len(d)*99)/100]
}
