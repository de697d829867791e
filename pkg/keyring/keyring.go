package keyring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
	"golang.org/x/sync/singleflight"

	"github.com/manushya-ai/manushya/pkg/keyring/migrations"
	"github.com/manushya-ai/manushya/pkg/postgres"
)

// Sealer is what services depend on to keep secrets at rest: Keyring implements it,
// and a test or a deployment without the keyring schema can supply another.
type Sealer interface {
	// Seal encrypts plaintext for the record ref names, under the primary data key
	// of ref.Scope (made on first use).
	Seal(ctx context.Context, ref Ref, plaintext []byte) ([]byte, error)
	// Open decrypts a value sealed for the same record. Values in a field's older
	// format open through the field's Legacy function.
	Open(ctx context.Context, ref Ref, ciphertext []byte) ([]byte, error)
	// Register declares the fields a service seals, so the re-encryption job visits
	// them and old key versions are destroyed only when no row of any field uses them.
	Register(fields ...Field) error
}

var (
	// ErrOpen is returned for any value that cannot be opened: wrong record,
	// tampered bytes, unknown or destroyed key. It says nothing more on purpose.
	ErrOpen = errors.New("keyring: cannot open sealed value")
	// ErrDestroyed is returned (alongside ErrOpen when opening) when the scope's keys
	// were destroyed (crypto-shredding): nothing sealed under them opens again, and
	// the scope seals nothing new.
	ErrDestroyed = errors.New("keyring: the data keys of this scope were destroyed")
	// ErrUnknownField is returned for a Ref whose field was never registered.
	ErrUnknownField = errors.New("keyring: field not registered")
)

// Field declares one sealed column, so the re-encryption job can find and re-seal
// its rows: it reads Key, Tenant and Identity to rebuild each row's Ref.
type Field struct {
	// Name is the label bound into the associated data (Ref.Field). Columns whose
	// values move between each other (a secret and its previous secret) share one.
	Name string
	// Table ("schema.table") and Column locate the sealed bytea column.
	Table  string
	Column string
	// Key is the row's single-column primary key; its value is Ref.Row.
	Key string
	// Tenant is the tenant column; empty for system-scope fields.
	Tenant string
	// Identity is the identity column for identity-scope fields; empty seals under
	// the tenant's key.
	Identity string
	// Legacy opens values written before the keyring (older formats); nil means there
	// are none. The job re-seals them.
	Legacy func(ref Ref, sealed []byte) ([]byte, error)
}

// ID is the field's registry key, "schema.table.column".
func (f Field) ID() string { return f.Table + "." + f.Column }

func (f Field) kind() byte {
	switch {
	case f.Tenant == "":
		return KindSystem
	case f.Identity == "":
		return KindTenant
	default:
		return KindIdentity
	}
}

var (
	identRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	tableRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$`)
)

func (f Field) validate() error {
	switch {
	case f.Name == "" || len(f.Name) > 200:
		return errors.New("keyring: field name must be 1 to 200 bytes")
	case !tableRe.MatchString(f.Table):
		return fmt.Errorf("keyring: field %s: table must be schema.table", f.Name)
	case !identRe.MatchString(f.Column) || !identRe.MatchString(f.Key):
		return fmt.Errorf("keyring: field %s: column and key must be plain identifiers", f.Name)
	case f.Tenant != "" && !identRe.MatchString(f.Tenant):
		return fmt.Errorf("keyring: field %s: tenant column must be a plain identifier", f.Name)
	case f.Identity != "" && (f.Tenant == "" || !identRe.MatchString(f.Identity)):
		return fmt.Errorf("keyring: field %s: an identity column needs a tenant column", f.Name)
	}
	return nil
}

// TenantLister pages through every tenant id in ascending order, after the given
// one (uuid.Nil for the first page). The re-encryption job visits each tenant's
// rows in a transaction bound to it, so row-level security applies to it as well.
type TenantLister func(ctx context.Context, after uuid.UUID, limit int) ([]uuid.UUID, error)

// Options configure a Keyring. Zero values take the defaults noted.
type Options struct {
	// Pool connects as the application role. A pool of its own (a few connections)
	// keeps key loads from waiting on connections held by the transactions that seal.
	Pool *pgxpool.Pool
	// KMS wraps the data keys (required).
	KMS    KMS
	Logger *slog.Logger
	// Registerer receives the keyring's metrics; nil registers none.
	Registerer prometheus.Registerer
	// CacheTTL is how long unwrapped data keys are kept in process (30 s). It also
	// bounds how long another process may go on sealing under a key this one
	// retired.
	CacheTTL time.Duration
	// CacheSize bounds the scopes cached (10,000).
	CacheSize int
	// RetireGrace is how long after a key stops sealing a pass must start before it
	// may prove the key unused (2 x CacheTTL + 1 minute).
	RetireGrace time.Duration
	// Tenants lists the tenants, for the job's passes over tenant fields.
	Tenants TenantLister
	// BatchSize is how many rows the job re-seals per transaction (500).
	BatchSize int
	// Interval is the pause between the job's passes (10 minutes).
	Interval time.Duration
	// RotateAfter makes the job rotate every primary data key older than this
	// before its passes; zero never rotates on its own.
	RotateAfter time.Duration
	// ReplaceUnusable makes a new primary key when the current one is wrapped under a
	// KEK this process lacks, instead of failing (for development databases shared
	// by checkouts with different keys; production should fail loudly).
	ReplaceUnusable bool
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = 30 * time.Second
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
	if o.RetireGrace <= 0 {
		o.RetireGrace = 2*o.CacheTTL + time.Minute
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Minute
	}
}

// Migrations returns the keyring schema's migration set.
func Migrations() postgres.Migrations { return migrations.Set }

// Keyring is envelope encryption over PostgreSQL: per-scope data keys (Tink
// AES-256-GCM keysets) wrapped by a KMS, cached unwrapped in process.
type Keyring struct {
	pool    *pgxpool.Pool
	kms     KMS
	opts    Options
	logger  *slog.Logger
	metrics *metrics

	mu       sync.RWMutex
	fields   map[string]Field // by ID
	names    map[string]nameInfo
	recorded map[string]bool // field ids known to be in keyring.fields

	cache *cache
	loads singleflight.Group

	progressMu sync.Mutex
	progress   map[string]*FieldProgress
}

type nameInfo struct {
	kind   byte
	legacy func(Ref, []byte) ([]byte, error)
}

// New returns a keyring; nothing touches the database until the first use.
func New(opts Options) (*Keyring, error) {
	if opts.Pool == nil || opts.KMS == nil {
		return nil, errors.New("keyring: a pool and a KMS are required")
	}
	opts.defaults()
	return &Keyring{
		pool: opts.Pool, kms: opts.KMS, opts: opts, logger: opts.Logger.With("component", "keyring"),
		metrics: newMetrics(opts.Registerer),
		fields:  map[string]Field{}, names: map[string]nameInfo{}, recorded: map[string]bool{},
		cache:    newCache(opts.CacheTTL, opts.CacheSize),
		progress: map[string]*FieldProgress{},
	}, nil
}

// Register implements Sealer. Registering the same field twice is harmless.
func (k *Keyring) Register(fields ...Field) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, f := range fields {
		if err := f.validate(); err != nil {
			return err
		}
		if old, ok := k.fields[f.ID()]; ok && (old.Name != f.Name || old.Key != f.Key || old.Tenant != f.Tenant || old.Identity != f.Identity) {
			return fmt.Errorf("keyring: field %s registered twice with different columns", f.ID())
		}
		if n, ok := k.names[f.Name]; ok && n.kind != f.kind() {
			return fmt.Errorf("keyring: field name %s used with two scope kinds", f.Name)
		}
		k.fields[f.ID()] = f
		n := k.names[f.Name]
		n.kind = f.kind()
		if f.Legacy != nil {
			n.legacy = f.Legacy
		}
		k.names[f.Name] = n
	}
	return nil
}

// Fields returns the registered fields.
func (k *Keyring) Fields() []Field {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]Field, 0, len(k.fields))
	for _, f := range k.fields {
		out = append(out, f)
	}
	return out
}

// check returns the scope kind of a ref, refusing unregistered fields and a scope
// of the wrong kind for its field.
func (k *Keyring) check(ref Ref) (nameInfo, byte, error) {
	k.mu.RLock()
	n, ok := k.names[ref.Field]
	k.mu.RUnlock()
	if !ok {
		return nameInfo{}, 0, fmt.Errorf("%w: %q", ErrUnknownField, ref.Field)
	}
	kind, ok := ref.Scope.Kind()
	if !ok || kind != n.kind {
		return nameInfo{}, 0, fmt.Errorf("keyring: field %s is sealed per %s, not %s", ref.Field, kindName(n.kind), ref.Scope)
	}
	return n, kind, nil
}

func kindName(k byte) string {
	switch k {
	case KindSystem:
		return "system"
	case KindTenant:
		return "tenant"
	default:
		return "identity"
	}
}

// Seal implements Sealer.
func (k *Keyring) Seal(ctx context.Context, ref Ref, plaintext []byte) ([]byte, error) {
	_, kind, err := k.check(ref)
	if err != nil {
		return nil, err
	}
	if err := k.record(ctx); err != nil {
		return nil, err
	}
	dk, err := k.primary(ctx, ref.Scope)
	if err != nil {
		return nil, err
	}
	return seal(dk, kind, ref, plaintext)
}

func seal(dk *dataKey, kind byte, ref Ref, plaintext []byte) ([]byte, error) {
	ct, err := dk.aead.Encrypt(plaintext, associatedData(kind, ref))
	if err != nil {
		return nil, fmt.Errorf("keyring: seal: %w", err)
	}
	out := make([]byte, 0, headerLen+len(ct))
	out = append(out, magic, kind)
	return append(out, ct...), nil
}

// Open implements Sealer.
func (k *Keyring) Open(ctx context.Context, ref Ref, ciphertext []byte) ([]byte, error) {
	n, kind, err := k.check(ref)
	if err != nil {
		return nil, err
	}
	h, ok := Parse(ciphertext)
	if !ok {
		if n.legacy == nil || (len(ciphertext) > 0 && ciphertext[0] == magic) {
			return nil, ErrOpen
		}
		return n.legacy(ref, ciphertext)
	}
	if h.Kind != kind {
		return nil, ErrOpen
	}
	dk, err := k.version(ctx, ref.Scope, h.KeyID)
	if err != nil {
		return nil, err
	}
	pt, err := dk.aead.Decrypt(ciphertext[headerLen:], associatedData(kind, ref))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// version returns the key a value names, reloading the scope once when it is not
// cached (another process may have rotated since).
func (k *Keyring) version(ctx context.Context, s Scope, id uint32) (*dataKey, error) {
	sk, err := k.load(ctx, s, false)
	if err != nil {
		return nil, err
	}
	if dk := sk.keys[id]; dk != nil {
		return dk, nil
	}
	// A reload at most once a second per scope, so forged key ids cannot turn every
	// request into a database read.
	if time.Since(sk.loaded) > time.Second && !sk.destroyed[id] {
		if sk, err = k.load(ctx, s, true); err != nil {
			return nil, err
		}
		if dk := sk.keys[id]; dk != nil {
			return dk, nil
		}
	}
	if sk.destroyed[id] || sk.shredded {
		return nil, fmt.Errorf("%w: %w", ErrOpen, ErrDestroyed)
	}
	if err := sk.unusable[id]; err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOpen, err)
	}
	return nil, ErrOpen
}

// primary returns the scope's sealing key, making the first one when it has none.
func (k *Keyring) primary(ctx context.Context, s Scope) (*dataKey, error) {
	sk, err := k.load(ctx, s, false)
	if err != nil {
		return nil, err
	}
	if sk.primary != nil {
		return sk.primary, nil
	}
	if sk.shredded {
		return nil, ErrDestroyed
	}
	if sk.primaryErr != nil && !k.opts.ReplaceUnusable {
		return nil, fmt.Errorf("keyring: primary data key of %s: %w", s, sk.primaryErr)
	}
	if sk.primaryErr != nil {
		k.logger.WarnContext(ctx, "primary data key is wrapped under another key-encryption key; making one this process can use",
			"scope", s.String(), "err", sk.primaryErr)
	}
	if _, err := k.rotate(ctx, s, true, sk.primaryID); err != nil {
		return nil, err
	}
	if sk, err = k.load(ctx, s, true); err != nil {
		return nil, err
	}
	if sk.primary == nil {
		if sk.shredded {
			return nil, ErrDestroyed
		}
		return nil, fmt.Errorf("keyring: no usable primary data key for %s: %w", s, sk.primaryErr)
	}
	return sk.primary, nil
}

// dataKey is one unwrapped key version.
type dataKey struct {
	id   uint32
	aead tink.AEAD
}

// scopeKeys is a scope's keys as loaded from the database.
type scopeKeys struct {
	primary    *dataKey
	primaryID  uint32 // also set when the primary could not be unwrapped
	primaryErr error
	keys       map[uint32]*dataKey
	destroyed  map[uint32]bool
	unusable   map[uint32]error
	shredded   bool
	loaded     time.Time
}

func (k *Keyring) load(ctx context.Context, s Scope, force bool) (*scopeKeys, error) {
	if !force {
		if sk := k.cache.get(s); sk != nil {
			return sk, nil
		}
	}
	v, err, _ := k.loads.Do(s.Tenant.String()+"/"+s.Identity.String(), func() (any, error) {
		sk, err := k.fetch(ctx, s)
		if err != nil {
			return nil, err
		}
		k.cache.put(s, sk)
		return sk, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*scopeKeys), nil
}

// inScope runs fn in a transaction bound to the scope's tenant, or to none for the
// system scope, so row-level security admits exactly the scope's key material.
func (k *Keyring) inScope(ctx context.Context, s Scope, fn func(pgx.Tx) error) error {
	if s.Tenant == uuid.Nil {
		return postgres.InTx(ctx, k.pool, fn)
	}
	return postgres.InTenantTx(ctx, k.pool, s.Tenant.String(), fn)
}

func (k *Keyring) fetch(ctx context.Context, s Scope) (*scopeKeys, error) {
	k.metrics.loads.Inc()
	type row struct {
		id      int64
		state   string
		kek     string
		wrapped []byte
	}
	var rows []row
	err := k.inScope(ctx, s, func(tx pgx.Tx) error {
		rs, err := tx.Query(ctx, `SELECT d.key_id, d.state, d.kek_id, m.wrapped
			FROM keyring.deks d
			LEFT JOIN keyring.dek_material m USING (tenant_id, identity_id, key_id)
			WHERE d.tenant_id = $1 AND d.identity_id = $2`, s.Tenant, s.Identity)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var r row
			if err := rs.Scan(&r.id, &r.state, &r.kek, &r.wrapped); err != nil {
				return err
			}
			rows = append(rows, r)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("keyring: load keys of %s: %w", s, err)
	}
	sk := &scopeKeys{keys: map[uint32]*dataKey{}, destroyed: map[uint32]bool{}, unusable: map[uint32]error{}, loaded: time.Now()}
	for _, r := range rows {
		id := uint32(r.id)
		switch r.state {
		case stateShredded:
			sk.shredded = true
			sk.destroyed[id] = true
			continue
		case stateDestroyed:
			sk.destroyed[id] = true
			continue
		}
		if r.state == statePrimary {
			sk.primaryID = id
		}
		if r.wrapped == nil {
			sk.destroyed[id] = true
			continue
		}
		dk, err := k.unwrap(ctx, s, id, r.kek, r.wrapped)
		if err != nil {
			sk.unusable[id] = err
			if r.state == statePrimary {
				sk.primaryErr = err
			}
			continue
		}
		sk.keys[id] = dk
		if r.state == statePrimary {
			sk.primary = dk
		}
	}
	return sk, nil
}

// Key states in keyring.deks.
const (
	statePrimary   = "primary"
	stateRetired   = "retired"
	stateDestroyed = "destroyed"
	stateShredded  = "shredded"
)

func (k *Keyring) unwrap(ctx context.Context, s Scope, id uint32, kekID string, wrapped []byte) (*dataKey, error) {
	var kmsErr error
	h, err := keyset.ReadWithContext(ctx, keyset.NewBinaryReader(bytes.NewReader(wrapped)), kekAEAD{kms: k.kms, keyID: kekID, err: &kmsErr}, wrapAD(s, id))
	if err != nil {
		if kmsErr != nil {
			err = kmsErr
		}
		return nil, fmt.Errorf("keyring: unwrap data key %d of %s under %s: %w", id, s, kekID, err)
	}
	if h.Len() != 1 || h.KeysetInfo().GetPrimaryKeyId() != id {
		return nil, fmt.Errorf("keyring: data key %d of %s holds another key", id, s)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("keyring: data key %d of %s: %w", id, s, err)
	}
	return &dataKey{id: id, aead: a}, nil
}

// newKey makes a one-key AES-256-GCM keyset and wraps it for the scope.
func (k *Keyring) newKey(ctx context.Context, s Scope) (uint32, []byte, error) {
	for {
		h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
		if err != nil {
			return 0, nil, fmt.Errorf("keyring: new data key: %w", err)
		}
		id := h.KeysetInfo().GetPrimaryKeyId()
		if id == 0 { // 0 is the tombstone's id
			continue
		}
		var buf bytes.Buffer
		if err := h.WriteWithContext(ctx, keyset.NewBinaryWriter(&buf), kekAEAD{kms: k.kms}, wrapAD(s, id)); err != nil {
			return 0, nil, fmt.Errorf("keyring: wrap data key: %w", err)
		}
		return id, buf.Bytes(), nil
	}
}

// lockScope serialises key changes of one scope across processes.
func lockScope(ctx context.Context, tx pgx.Tx, s Scope) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('manushya keyring ' || $1::text || ' ' || $2::text, 0))`, s.Tenant, s.Identity)
	return err
}

// Rotate makes a new primary key for the scope at once; the old one is retired: it
// still opens what it sealed until the re-encryption job has moved every row off
// it, and is destroyed then. It returns the new key's id.
func (k *Keyring) Rotate(ctx context.Context, s Scope) (uint32, error) {
	if _, ok := s.Kind(); !ok {
		return 0, errors.New("keyring: an identity scope needs a tenant")
	}
	return k.rotate(ctx, s, false, 0)
}

// rotate makes a new primary. With ifMissing it does so only while the scope has no
// primary, or only the unusable one named (another process may have just made one).
func (k *Keyring) rotate(ctx context.Context, s Scope, ifMissing bool, unusable uint32) (uint32, error) {
	id, wrapped, err := k.newKey(ctx, s)
	if err != nil {
		return 0, err
	}
	err = k.inScope(ctx, s, func(tx pgx.Tx) error {
		if err := lockScope(ctx, tx, s); err != nil {
			return err
		}
		var shredded bool
		var current *int64
		if err := tx.QueryRow(ctx, `SELECT
				EXISTS (SELECT 1 FROM keyring.deks WHERE tenant_id = $1 AND identity_id = $2 AND state = 'shredded'),
				(SELECT key_id FROM keyring.deks WHERE tenant_id = $1 AND identity_id = $2 AND state = 'primary')`,
			s.Tenant, s.Identity).Scan(&shredded, &current); err != nil {
			return err
		}
		if shredded {
			return ErrDestroyed
		}
		if ifMissing && current != nil && uint32(*current) != unusable {
			id = uint32(*current)
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE keyring.deks SET state = 'retired', retire_time = now()
			WHERE tenant_id = $1 AND identity_id = $2 AND state = 'primary'`, s.Tenant, s.Identity); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO keyring.deks (tenant_id, identity_id, key_id, state, kek_id)
			VALUES ($1, $2, $3, 'primary', $4)`, s.Tenant, s.Identity, int64(id), k.kms.KeyID()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO keyring.dek_material (tenant_id, identity_id, key_id, wrapped)
			VALUES ($1, $2, $3, $4)`, s.Tenant, s.Identity, int64(id), wrapped)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrDestroyed) {
			return 0, err
		}
		if postgres.IsUniqueViolation(err) {
			// Two new keys with one id (one in four billion), or a primary made
			// concurrently without the lock: the caller's reload settles it.
			return 0, fmt.Errorf("keyring: rotate %s: concurrent key change, retry: %w", s, err)
		}
		return 0, fmt.Errorf("keyring: rotate %s: %w", s, err)
	}
	k.cache.drop(s)
	if !ifMissing {
		k.logger.InfoContext(ctx, "data key rotated", "scope", s.String(), "key_id", id)
	}
	return id, nil
}

// Destroy crypto-shreds a scope: its key material is deleted, so every value sealed
// under any of its keys can never be opened again (backups and event copies
// included), and the scope seals nothing new. Destroying a tenant destroys its
// identities' scopes too. It returns how many keys were destroyed. Other processes
// may keep keys cached for up to Options.CacheTTL.
func (k *Keyring) Destroy(ctx context.Context, s Scope) (int, error) {
	kind, ok := s.Kind()
	if !ok {
		return 0, errors.New("keyring: an identity scope needs a tenant")
	}
	var n int64
	err := k.inScope(ctx, s, func(tx pgx.Tx) error {
		if err := lockScope(ctx, tx, s); err != nil {
			return err
		}
		// A tenant takes its identities with it; the system scope is only itself.
		whole := kind == KindTenant
		tag, err := tx.Exec(ctx, `DELETE FROM keyring.dek_material
			WHERE tenant_id = $1 AND ($3 OR identity_id = $2)`, s.Tenant, s.Identity, whole)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `UPDATE keyring.deks SET state = 'shredded', destroy_time = coalesce(destroy_time, now())
			WHERE tenant_id = $1 AND ($3 OR identity_id = $2)`, s.Tenant, s.Identity, whole); err != nil {
			return err
		}
		// The tombstone keeps the scope from ever making a new key.
		_, err = tx.Exec(ctx, `INSERT INTO keyring.deks (tenant_id, identity_id, key_id, state, kek_id, destroy_time)
			VALUES ($1, $2, 0, 'shredded', '', now()) ON CONFLICT DO NOTHING`, s.Tenant, s.Identity)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("keyring: destroy %s: %w", s, err)
	}
	if kind == KindTenant {
		k.cache.dropTenant(s.Tenant)
	} else {
		k.cache.drop(s)
	}
	k.metrics.destroyed.Add(float64(n))
	k.logger.InfoContext(ctx, "data keys destroyed", "scope", s.String(), "keys", n)
	return int(n), nil
}

// record makes sure every registered field is in keyring.fields before a value is
// sealed into it, so no process destroys a key that a field it does not know uses.
func (k *Keyring) record(ctx context.Context) error {
	k.mu.RLock()
	var missing []string
	for id := range k.fields {
		if !k.recorded[id] {
			missing = append(missing, id)
		}
	}
	k.mu.RUnlock()
	if len(missing) == 0 {
		return nil
	}
	if _, err := k.pool.Exec(ctx, `INSERT INTO keyring.fields (field) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, missing); err != nil {
		return fmt.Errorf("keyring: record fields: %w", err)
	}
	k.mu.Lock()
	for _, id := range missing {
		k.recorded[id] = true
	}
	k.mu.Unlock()
	return nil
}

var _ Sealer = (*Keyring)(nil)
