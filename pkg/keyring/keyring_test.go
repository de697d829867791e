package keyring_test

import (
	"bytes"
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/pkg/secretbox"
)

//go:embed testdata/migrations/*.sql
var testMigrations embed.FS

func ktMigrations() postgres.Migrations {
	sub, err := fs.Sub(testMigrations, "testdata/migrations")
	if err != nil {
		panic(err)
	}
	return postgres.Migrations{Schema: "kt", FS: sub}
}

const (
	fieldSecret = "kt.secrets.secret"
	fieldSystem = "kt.system_secrets.secret"
)

// legacyBox stands for the sealer the fields used before the keyring.
var legacyBox = func() *secretbox.Box {
	b, err := secretbox.New("old1", bytes.Repeat([]byte{7}, 32))
	if err != nil {
		panic(err)
	}
	return b
}()

func testFields() []keyring.Field {
	return []keyring.Field{
		{Name: fieldSecret, Table: "kt.secrets", Column: "secret", Key: "id", Tenant: "tenant_id", Identity: "identity_id",
			Legacy: func(ref keyring.Ref, sealed []byte) ([]byte, error) { return legacyBox.Open(sealed, ref.Row) }},
		{Name: fieldSystem, Table: "kt.system_secrets", Column: "secret", Key: "name"},
	}
}

type bundle struct {
	db      *pgtest.DB
	kr      *keyring.Keyring
	tenants []uuid.UUID
	reg     *prometheus.Registry
}

func kek(fill byte) []byte { return bytes.Repeat([]byte{fill}, 32) }

func setup(t testing.TB) *bundle {
	t.Helper()
	b := &bundle{db: pgtest.New(t, keyring.Migrations(), ktMigrations())}
	b.kr = b.newKeyring(t, kek(1))
	return b
}

func (b *bundle) newKeyring(t testing.TB, current []byte, previous ...[]byte) *keyring.Keyring {
	t.Helper()
	kms, err := keyring.NewLocalKMS(current, previous...)
	require.NoError(t, err)
	b.reg = prometheus.NewRegistry()
	kr, err := keyring.New(keyring.Options{
		Pool: b.db.Pool, KMS: kms, Logger: slog.New(slog.DiscardHandler), Registerer: b.reg,
		RetireGrace: time.Millisecond, BatchSize: 7,
		Tenants: func(_ context.Context, after uuid.UUID, limit int) ([]uuid.UUID, error) {
			ts := slices.Clone(b.tenants)
			slices.SortFunc(ts, func(x, y uuid.UUID) int { return bytes.Compare(x[:], y[:]) })
			var out []uuid.UUID
			for _, id := range ts {
				if bytes.Compare(id[:], after[:]) > 0 && len(out) < limit {
					out = append(out, id)
				}
			}
			return out, nil
		},
	})
	require.NoError(t, err)
	require.NoError(t, kr.Register(testFields()...))
	return kr
}

func ref(tenant, identity, row uuid.UUID) keyring.Ref {
	return keyring.Ref{Field: fieldSecret, Scope: keyring.Identity(tenant, identity), Row: row[:]}
}

// insert seals plaintext for a new row of kt.secrets and stores it.
func (b *bundle) insert(t testing.TB, tenant, identity uuid.UUID, plaintext string) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7())
	c, err := b.kr.Seal(ctx, ref(tenant, identity, id), []byte(plaintext))
	require.NoError(t, err)
	b.store(t, tenant, identity, id, c)
	return id
}

func (b *bundle) store(t testing.TB, tenant, identity, id uuid.UUID, c []byte) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, postgres.InTenantTx(ctx, b.db.Pool, tenant.String(), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO kt.secrets (id, tenant_id, identity_id, secret) VALUES ($1, $2, $3, $4)`, id, tenant, identity, c)
		return err
	}))
}

func (b *bundle) stored(t testing.TB, tenant, id uuid.UUID) []byte {
	t.Helper()
	ctx := context.Background()
	var c []byte
	require.NoError(t, postgres.InTenantTx(ctx, b.db.Pool, tenant.String(), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT secret FROM kt.secrets WHERE id = $1`, id).Scan(&c)
	}))
	return c
}

func keyID(t testing.TB, c []byte) uint32 {
	t.Helper()
	h, ok := keyring.Parse(c)
	require.True(t, ok, "value is in the keyring format")
	return h.KeyID
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tenant, identity, row := uuid.New(), uuid.New(), uuid.New()
	secret := []byte("JBSWY3DPEHPK3PXP")

	c, err := b.kr.Seal(ctx, ref(tenant, identity, row), secret)
	require.NoError(t, err)
	require.NotContains(t, string(c), string(secret))
	require.Len(t, c, len(secret)+keyring.Overhead)
	h, ok := keyring.Parse(c)
	require.True(t, ok)
	require.Equal(t, keyring.KindIdentity, h.Kind)
	p, err := b.kr.Open(ctx, ref(tenant, identity, row), c)
	require.NoError(t, err)
	require.Equal(t, secret, p)

	c2, err := b.kr.Seal(ctx, ref(tenant, identity, row), secret)
	require.NoError(t, err)
	require.NotEqual(t, c, c2, "nonces are random")
	require.Equal(t, keyID(t, c), keyID(t, c2), "one primary key per scope")

	// The system scope and the empty plaintext work as well.
	sys := keyring.Ref{Field: fieldSystem, Scope: keyring.System(), Row: []byte("kid-1")}
	c, err = b.kr.Seal(ctx, sys, nil)
	require.NoError(t, err)
	p, err = b.kr.Open(ctx, sys, c)
	require.NoError(t, err)
	require.Empty(t, p)

	// A fresh keyring (another process: nothing cached) opens what this one sealed.
	other := b.newKeyring(t, kek(1))
	p, err = other.Open(ctx, ref(tenant, identity, row), c2)
	require.NoError(t, err)
	require.Equal(t, secret, p)
}

func TestMovedCiphertextDoesNotOpen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tenant, identity, row := uuid.New(), uuid.New(), uuid.New()
	c, err := b.kr.Seal(ctx, ref(tenant, identity, row), []byte("secret"))
	require.NoError(t, err)
	otherTenant := uuid.New()
	// The other tenant has keys of its own.
	_, err = b.kr.Seal(ctx, ref(otherTenant, identity, row), []byte("x"))
	require.NoError(t, err)

	for name, r := range map[string]keyring.Ref{
		"other row":      ref(tenant, identity, uuid.New()),
		"other identity": ref(tenant, uuid.New(), row),
		"other tenant":   ref(otherTenant, identity, row),
		"other field":    {Field: fieldSystem, Scope: keyring.System(), Row: row[:]},
	} {
		_, err := b.kr.Open(ctx, r, c)
		require.Error(t, err, name)
	}
	tampered := bytes.Clone(c)
	tampered[len(tampered)-1] ^= 1
	_, err = b.kr.Open(ctx, ref(tenant, identity, row), tampered)
	require.ErrorIs(t, err, keyring.ErrOpen)
	// A forged key id does not open either.
	forged := bytes.Clone(c)
	forged[4] ^= 0xff
	_, err = b.kr.Open(ctx, ref(tenant, identity, row), forged)
	require.ErrorIs(t, err, keyring.ErrOpen)

	// Unregistered fields and scopes of the wrong kind are refused.
	_, err = b.kr.Seal(ctx, keyring.Ref{Field: "nope", Scope: keyring.Tenant(tenant)}, []byte("x"))
	require.ErrorIs(t, err, keyring.ErrUnknownField)
	_, err = b.kr.Seal(ctx, keyring.Ref{Field: fieldSecret, Scope: keyring.Tenant(tenant)}, []byte("x"))
	require.Error(t, err)
}

// Row-level security keeps one tenant's wrapped keys from another tenant's
// transactions, and the system keys from every tenant's.
func TestKeyMaterialIsTenantIsolated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a, other := uuid.New(), uuid.New()
	b.insert(t, a, uuid.New(), "a")
	_, err := b.kr.Seal(ctx, keyring.Ref{Field: fieldSystem, Scope: keyring.System(), Row: []byte("k")}, []byte("s"))
	require.NoError(t, err)
	var n int
	require.NoError(t, postgres.InTenantTx(ctx, b.db.Pool, other.String(), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM keyring.dek_material`).Scan(&n)
	}))
	require.Zero(t, n)
	require.NoError(t, postgres.InTenantTx(ctx, b.db.Pool, a.String(), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM keyring.dek_material`).Scan(&n)
	}))
	require.Equal(t, 1, n, "the tenant sees its identity's key, not the system key")
}

func TestRotationReencryptsRowByRowAndDestroysOldKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tenant, identity := uuid.New(), uuid.New()
	b.tenants = []uuid.UUID{tenant}
	scope := keyring.Identity(tenant, identity)

	rows := map[uuid.UUID]string{}
	for i := range 20 {
		s := "secret-" + string(rune('a'+i))
		rows[b.insert(t, tenant, identity, s)] = s
	}
	var oldKey uint32
	for id := range rows {
		oldKey = keyID(t, b.stored(t, tenant, id))
	}

	newKey, err := b.kr.Rotate(ctx, scope)
	require.NoError(t, err)
	require.NotEqual(t, oldKey, newKey)

	// New writes use the new key at once; old rows still open.
	fresh := b.insert(t, tenant, identity, "fresh")
	require.Equal(t, newKey, keyID(t, b.stored(t, tenant, fresh)))
	rows[fresh] = "fresh"
	for id, want := range rows {
		p, err := b.kr.Open(ctx, ref(tenant, identity, id), b.stored(t, tenant, id))
		require.NoError(t, err)
		require.Equal(t, want, string(p))
	}

	rep, err := b.kr.Reencrypt(ctx)
	require.NoError(t, err)
	var pass keyring.FieldProgress
	for _, p := range rep.Fields {
		if p.Field == "kt.secrets.secret" {
			pass = p
		}
	}
	require.EqualValues(t, 21, pass.Scanned)
	require.EqualValues(t, 20, pass.Resealed)
	require.EqualValues(t, 1, pass.Current)
	require.Zero(t, pass.Failed)
	require.Equal(t, 1, rep.Destroyed, "the old key is destroyed once no row uses it")

	// Row by row: every row is under the new key and opens to its plaintext.
	for id, want := range rows {
		c := b.stored(t, tenant, id)
		require.Equal(t, newKey, keyID(t, c), "row %s", id)
		p, err := b.kr.Open(ctx, ref(tenant, identity, id), c)
		require.NoError(t, err)
		require.Equal(t, want, string(p))
	}
	var state string
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT state FROM keyring.deks WHERE tenant_id = $1 AND identity_id = $2 AND key_id = $3`,
		tenant, identity, int64(oldKey)).Scan(&state))
	require.Equal(t, "destroyed", state)
	require.InDelta(t, 20, testutil.ToFloat64(mustCounter(t, b.reg, "manushya_keyring_reencrypt_rows_total", "resealed")), 0)

	st, err := b.kr.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st.Fields, 2)
	for _, f := range st.Fields {
		require.NotNil(t, f.LastPassStart, f.Field)
		require.Zero(t, f.Failed)
	}
}

// A retired key stays while a row the job cannot re-seal still uses it.
func TestRetiredKeyKeptWhileARowUsesIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tenant, identity := uuid.New(), uuid.New()
	b.tenants = []uuid.UUID{tenant}
	id := b.insert(t, tenant, identity, "kept")
	old := keyID(t, b.stored(t, tenant, id))
	// The row's ciphertext is moved to another row id: it can never be opened there,
	// so the job cannot re-seal it and must keep the key.
	moved := uuid.New()
	b.store(t, tenant, identity, moved, b.stored(t, tenant, id))
	_, err := b.kr.Rotate(ctx, keyring.Identity(tenant, identity))
	require.NoError(t, err)
	rep, err := b.kr.Reencrypt(ctx)
	require.NoError(t, err)
	require.Zero(t, rep.Destroyed)
	var state string
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT state FROM keyring.deks WHERE identity_id = $1 AND key_id = $2`,
		identity, int64(old)).Scan(&state))
	require.Equal(t, "retired", state)
	st, err := b.kr.Status(ctx)
	require.NoError(t, err)
	for _, f := range st.Fields {
		if f.Field == "kt.secrets.secret" {
			require.EqualValues(t, 1, f.Failed)
			require.EqualValues(t, 1, f.HeldKeys)
		}
	}
}

func TestDestroyMakesValuesUnreadable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tenant, alice, bob := uuid.New(), uuid.New(), uuid.New()
	ra, rb := b.insert(t, tenant, alice, "alice"), b.insert(t, tenant, bob, "bob")

	n, err := b.kr.Destroy(ctx, keyring.Identity(tenant, alice))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = b.kr.Open(ctx, ref(tenant, alice, ra), b.stored(t, tenant, ra))
	require.ErrorIs(t, err, keyring.ErrOpen)
	require.ErrorIs(t, err, keyring.ErrDestroyed)
	_, err = b.kr.Seal(ctx, ref(tenant, alice, uuid.New()), []byte("again"))
	require.ErrorIs(t, err, keyring.ErrDestroyed, "a shredded scope seals nothing new")
	// Another process that had nothing cached cannot open it either.
	_, err = b.newKeyring(t, kek(1)).Open(ctx, ref(tenant, alice, ra), b.stored(t, tenant, ra))
	require.ErrorIs(t, err, keyring.ErrDestroyed)
	// Bob is untouched.
	p, err := b.kr.Open(ctx, ref(tenant, bob, rb), b.stored(t, tenant, rb))
	require.NoError(t, err)
	require.Equal(t, "bob", string(p))

	// Destroying the tenant takes its identities' keys with it.
	_, err = b.kr.Destroy(ctx, keyring.Tenant(tenant))
	require.NoError(t, err)
	_, err = b.kr.Open(ctx, ref(tenant, bob, rb), b.stored(t, tenant, rb))
	require.ErrorIs(t, err, keyring.ErrDestroyed)
	var material int
	require.NoError(t, postgres.InTenantTx(ctx, b.db.Pool, tenant.String(), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM keyring.dek_material`).Scan(&material)
	}))
	require.Zero(t, material)
}

func TestKEKRotationRewrapsDataKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tenant, identity := uuid.New(), uuid.New()
	b.tenants = []uuid.UUID{tenant}
	id := b.insert(t, tenant, identity, "under kek 1")

	// The new KEK is configured with the old one as previous: everything opens, the
	// job re-wraps the data key, then the old KEK can go.
	rotated := b.newKeyring(t, kek(2), kek(1))
	p, err := rotated.Open(ctx, ref(tenant, identity, id), b.stored(t, tenant, id))
	require.NoError(t, err)
	require.Equal(t, "under kek 1", string(p))
	rep, err := rotated.Reencrypt(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Rewrapped)
	st, err := rotated.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, keyring.KEKID(kek(2)), st.KEK)
	for _, c := range st.Keys {
		require.Equal(t, keyring.KEKID(kek(2)), c.KEK)
	}

	only2 := b.newKeyring(t, kek(2))
	p, err = only2.Open(ctx, ref(tenant, identity, id), b.stored(t, tenant, id))
	require.NoError(t, err)
	require.Equal(t, "under kek 1", string(p))
	// The old KEK alone opens nothing any more.
	_, err = b.newKeyring(t, kek(1)).Open(ctx, ref(tenant, identity, id), b.stored(t, tenant, id))
	require.ErrorIs(t, err, keyring.ErrOpen)
}

func TestLegacyValuesOpenAndAreResealed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tenant, identity := uuid.New(), uuid.New()
	b.tenants = []uuid.UUID{tenant}
	id := uuid.New()
	old, err := legacyBox.Seal([]byte("from before"), id[:])
	require.NoError(t, err)
	b.store(t, tenant, identity, id, old)

	p, err := b.kr.Open(ctx, ref(tenant, identity, id), old)
	require.NoError(t, err)
	require.Equal(t, "from before", string(p))
	_, err = b.kr.Open(ctx, ref(tenant, identity, uuid.New()), old)
	require.Error(t, err, "the legacy format still binds the row")

	_, err = b.kr.Reencrypt(ctx)
	require.NoError(t, err)
	c := b.stored(t, tenant, id)
	require.True(t, keyring.IsSealed(c), "the job moved the row to the keyring format")
	p, err = b.kr.Open(ctx, ref(tenant, identity, id), c)
	require.NoError(t, err)
	require.Equal(t, "from before", string(p))

	// A system field without a legacy opener refuses unknown bytes.
	_, err = b.kr.Open(ctx, keyring.Ref{Field: fieldSystem, Scope: keyring.System(), Row: []byte("k")}, []byte("plain"))
	require.ErrorIs(t, err, keyring.ErrOpen)
}

func TestReplaceUnusablePrimary(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tenant, identity := uuid.New(), uuid.New()
	b.insert(t, tenant, identity, "kek 1")
	// A process with another KEK cannot use the primary: by default it fails,
	// naming the setting.
	other := b.newKeyring(t, kek(3))
	_, err := other.Seal(ctx, ref(tenant, identity, uuid.New()), []byte("x"))
	require.ErrorIs(t, err, keyring.ErrUnknownKEK)

	kms, err := keyring.NewLocalKMS(kek(3))
	require.NoError(t, err)
	dev, err := keyring.New(keyring.Options{Pool: b.db.Pool, KMS: kms, Logger: slog.New(slog.DiscardHandler), ReplaceUnusable: true})
	require.NoError(t, err)
	require.NoError(t, dev.Register(testFields()...))
	id := uuid.New()
	c, err := dev.Seal(ctx, ref(tenant, identity, id), []byte("kek 3"))
	require.NoError(t, err)
	p, err := dev.Open(ctx, ref(tenant, identity, id), c)
	require.NoError(t, err)
	require.Equal(t, "kek 3", string(p))
}

func mustCounter(t testing.TB, reg *prometheus.Registry, name, result string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
		c.Add(sum)
		return c
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

// With RotateAfter, the job rotates keys past that age by itself and moves their rows.
func TestJobRotatesOldKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tenant, identity := uuid.New(), uuid.New()
	b.tenants = []uuid.UUID{tenant}
	id := b.insert(t, tenant, identity, "aging")
	old := keyID(t, b.stored(t, tenant, id))
	kms, err := keyring.NewLocalKMS(kek(1))
	require.NoError(t, err)
	kr, err := keyring.New(keyring.Options{Pool: b.db.Pool, KMS: kms, Logger: slog.New(slog.DiscardHandler),
		RetireGrace: time.Millisecond, RotateAfter: time.Millisecond, Tenants: func(context.Context, uuid.UUID, int) ([]uuid.UUID, error) { return nil, nil }})
	require.NoError(t, err)
	require.NoError(t, kr.Register(testFields()...))
	time.Sleep(5 * time.Millisecond)
	rep, err := kr.Reencrypt(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Rotated)
	// This keyring's tenant list is empty: the row stays under the retired key,
	// which the last check before destroying finds, so the key is kept. A keyring
	// that lists the tenant (another process: nothing cached) moves the row.
	require.Zero(t, rep.Destroyed)
	rep, err = b.newKeyring(t, kek(1)).Reencrypt(ctx)
	require.NoError(t, err)
	require.NotEqual(t, old, keyID(t, b.stored(t, tenant, id)))
	require.Equal(t, 1, rep.Destroyed)
}
