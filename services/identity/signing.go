package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/manushya-ai/manushya/pkg/auth"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/secretbox"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// deriveSealer returns the secretbox of the configured key (auth.encryption_key),
// or, when none is configured, one derived from the API key pepper with HKDF under
// its own label. Signing keys and refresh successors were sealed with it before the
// keyring; it now only opens those (see legacyTokenSealer).
func deriveSealer(kek, pepper string) (*secretbox.Box, error) {
	if kek != "" {
		key, err := secretbox.ParseKey(kek)
		if err != nil {
			return nil, fmt.Errorf("identity: auth.token_encryption_key: %w", err)
		}
		return secretbox.New("kek1", key)
	}
	key, err := hkdf.Key(sha256.New, []byte(pepper), nil, "manushya identity token-encryption key", 32)
	if err != nil {
		return nil, fmt.Errorf("derive token encryption key: %w", err)
	}
	return secretbox.New("pepper1", key)
}

type signingKey struct {
	kid    string
	priv   ed25519.PrivateKey
	pub    ed25519.PublicKey
	active time.Time
	retire *time.Time
}

// keyring holds the signing keys: the newest active key signs, every unexpired key
// verifies. Rotation publishes a new key first and lets it sign only after
// prepublish, so verifiers that cache the JWKS know it before they see a token it
// signed; the old keys stop signing then and keep verifying until the tokens they
// signed have expired. No token breaks at any point of a rotation.
type keyring struct {
	store       *store.Store
	sealer      Sealer
	rotateEvery time.Duration
	prepublish  time.Duration
	logger      *slog.Logger

	mu sync.RWMutex
	// signers are the keys that sign now or will (newest first), private key open.
	signers []*signingKey
	keys    map[string]*signingKey
	// jwk is the published key set, newest first.
	jwk []*identityv1.JsonWebKey

	reloadMu   sync.Mutex
	lastReload time.Time
	// unopenable remembers keys already reported as sealed under another key, so a
	// reload every 30 s does not repeat the same error.
	unopenable sync.Map
}

func newKeyring(st *store.Store, sealer Sealer, rotateEvery time.Duration, logger *slog.Logger) *keyring {
	return &keyring{
		store: st, sealer: sealer, rotateEvery: rotateEvery, prepublish: 10 * time.Minute,
		logger: logger, keys: map[string]*signingKey{},
	}
}

func newKid() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ensure makes sure a live key exists and is younger than rotateEvery (creating
// one under an advisory lock, so replicas starting together make one key), then
// loads the keys.
func (k *keyring) ensure(ctx context.Context, force bool) error {
	err := k.store.InGlobal(ctx, func(tx *store.Tx) error {
		if err := tx.LockSigningKeys(ctx); err != nil {
			return fmt.Errorf("lock signing keys: %w", err)
		}
		rows, err := tx.ListSigningKeys(ctx)
		if err != nil {
			return fmt.Errorf("list signing keys: %w", err)
		}
		// rows are newest first: the first unretired one is the signer or the
		// successor waiting for its activation.
		var live *sqlc.IdentitySigningKey
		for i := range rows {
			if rows[i].RetireTime == nil {
				live = &rows[i]
				break
			}
		}
		// A live key this process cannot open (sealed under another key-encryption
		// key, e.g. a development database shared by checkouts with different
		// peppers) cannot sign here: make one that can, active at once.
		usable := live != nil
		if usable {
			if _, err := k.sealer.Open(ctx, signingKeyRef(live.Kid), live.PrivateKey); err != nil {
				usable = false
				k.logger.WarnContext(ctx, "live signing key is sealed under another key; creating one this process can use", "kid", live.Kid)
			}
		}
		if !force && usable && time.Since(live.ActivateTime) < k.rotateEvery {
			return nil
		}
		activate := time.Now()
		if usable {
			activate = activate.Add(k.prepublish)
		}
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("generate signing key: %w", err)
		}
		kid, err := newKid()
		if err != nil {
			return err
		}
		sealed, err := k.sealer.Seal(ctx, signingKeyRef(kid), priv.Seed())
		if err != nil {
			return fmt.Errorf("seal signing key: %w", err)
		}
		if _, err := tx.CreateSigningKey(ctx, sqlc.CreateSigningKeyParams{
			Kid: kid, Algorithm: auth.AccessTokenAlg, PublicKey: pub, PrivateKey: sealed, ActivateTime: activate,
		}); err != nil {
			return fmt.Errorf("store signing key: %w", err)
		}
		// Old keys sign until the new one activates and verify for one more token
		// lifetime (plus skew), then disappear.
		until := activate.Add(auth.MaxAccessTokenTTL + time.Minute)
		if err := tx.RetireSigningKeys(ctx, sqlc.RetireSigningKeysParams{Kid: kid, RetireAt: activate, VerifyUntil: until}); err != nil {
			return fmt.Errorf("retire signing keys: %w", err)
		}
		k.logger.InfoContext(ctx, "signing key created", "kid", kid, "activate_time", activate)
		return nil
	})
	if err != nil {
		return err
	}
	return k.load(ctx)
}

// load reads the unexpired keys. Private keys are opened only for live keys.
func (k *keyring) load(ctx context.Context) error {
	rows, err := k.store.Global().ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	keys := make(map[string]*signingKey, len(rows))
	var signers []*signingKey
	jwk := make([]*identityv1.JsonWebKey, 0, len(rows))
	now := time.Now()
	for _, r := range rows {
		if r.Algorithm != auth.AccessTokenAlg || len(r.PublicKey) != ed25519.PublicKeySize {
			continue
		}
		sk := &signingKey{kid: r.Kid, pub: ed25519.PublicKey(r.PublicKey), active: r.ActivateTime, retire: r.RetireTime}
		if r.RetireTime == nil || r.RetireTime.After(now) {
			seed, err := k.sealer.Open(ctx, signingKeyRef(r.Kid), r.PrivateKey)
			if err != nil || len(seed) != ed25519.SeedSize {
				// A key sealed under another key-encryption key: it can still verify.
				if _, seen := k.unopenable.LoadOrStore(r.Kid, true); !seen {
					k.logger.ErrorContext(ctx, "signing key cannot be opened; check encryption.kek (or the pepper it derives from)", "kid", r.Kid)
				}
			} else {
				sk.priv = ed25519.NewKeyFromSeed(seed)
				signers = append(signers, sk)
			}
		}
		keys[r.Kid] = sk
		jwk = append(jwk, &identityv1.JsonWebKey{
			Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(r.PublicKey),
			Kid: r.Kid, Alg: auth.AccessTokenAlg, Use: "sig",
		})
	}
	k.mu.Lock()
	k.keys, k.signers, k.jwk = keys, signers, jwk
	k.mu.Unlock()
	k.reloadMu.Lock()
	k.lastReload = time.Now()
	k.reloadMu.Unlock()
	return nil
}

var errNoSigningKey = errors.New("no signing key can be used")

// signer returns the key that signs new tokens now: the newest active one. The
// switch to a successor happens at its activation time without a database read.
func (k *keyring) signer() (*signingKey, error) {
	now := time.Now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, sk := range k.signers {
		if !sk.active.After(now) {
			return sk, nil
		}
	}
	// Only a successor that is not active yet (clock skew between replicas): the
	// newest key that is published is still safe to use.
	if len(k.signers) > 0 {
		return k.signers[len(k.signers)-1], nil
	}
	return nil, errNoSigningKey
}

// PublicKey implements auth.KeySource. An unknown kid reloads from the database
// (another replica may have rotated), at most every few seconds.
func (k *keyring) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	k.mu.RLock()
	sk, ok := k.keys[kid]
	k.mu.RUnlock()
	if ok {
		return sk.pub, nil
	}
	k.reloadMu.Lock()
	due := time.Since(k.lastReload) > 5*time.Second
	k.reloadMu.Unlock()
	if due {
		if err := k.load(ctx); err != nil {
			return nil, err
		}
		k.mu.RLock()
		sk, ok = k.keys[kid]
		k.mu.RUnlock()
		if ok {
			return sk.pub, nil
		}
	}
	return nil, auth.ErrUnknownKey
}

// published returns the JSON Web Keys, newest first.
func (k *keyring) published() []*identityv1.JsonWebKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.jwk
}
