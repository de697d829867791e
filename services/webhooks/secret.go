package webhooks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/keyring"
)

// secretPrefix starts every signing secret, as in the Standard Webhooks libraries.
const secretPrefix = "whsec_"

// secretBytes is the length of the HMAC key behind a secret.
const secretBytes = 32

// Sealer protects values at rest (signing secrets, custom headers) with envelope
// encryption under the tenant's data key (pkg/keyring), bound to the field and the
// webhook's row so a ciphertext cannot be moved to another webhook or tenant.
type Sealer = keyring.Sealer

// The sealed fields. The names are bound into every ciphertext: never rename them.
// A secret and its previous secret share one name because rotation moves the value
// from one column to the other.
const (
	fieldSecret  = "webhooks.endpoints.secret"
	fieldHeaders = "webhooks.endpoints.headers"
)

func secretRef(tenant, id uuid.UUID) keyring.Ref {
	return keyring.Ref{Field: fieldSecret, Scope: keyring.Tenant(tenant), Row: id[:]}
}

func headersRef(tenant, id uuid.UUID) keyring.Ref {
	return keyring.Ref{Field: fieldHeaders, Scope: keyring.Tenant(tenant), Row: id[:]}
}

// registerFields declares the sealed columns to the keyring. Values written before
// it (version byte 0: stored plain when webhooks.secret_key was unset; 1: AES-GCM
// under webhooks.secret_key) still open, and the re-encryption job re-seals them.
func registerFields(kr Sealer, legacyKey []byte) error {
	var aes *AESGCMSealer
	if legacyKey != nil {
		var err error
		if aes, err = NewAESGCMSealer(legacyKey); err != nil {
			return err
		}
	}
	legacy := func(ref keyring.Ref, sealed []byte) ([]byte, error) {
		switch {
		case len(sealed) > 0 && sealed[0] == 0:
			return PlainSealer{}.Open(sealed, ref.Row)
		case len(sealed) > 0 && sealed[0] == 1 && aes != nil:
			return aes.Open(sealed, ref.Row)
		}
		return nil, keyring.ErrOpen
	}
	f := func(name, column string) keyring.Field {
		return keyring.Field{Name: name, Table: "webhooks.endpoints", Column: column, Key: "id", Tenant: "tenant_id", Legacy: legacy}
	}
	return kr.Register(f(fieldSecret, "secret"), f(fieldSecret, "previous_secret"), f(fieldHeaders, "headers"))
}

// PlainSealer is the format of values stored before the keyring when no
// webhooks.secret_key was set: a 0 byte, then the value. Only read now.
type PlainSealer struct{}

// Seal implements the older format (tests of the migration use it).
func (PlainSealer) Seal(plaintext, _ []byte) ([]byte, error) {
	return append([]byte{0}, plaintext...), nil
}

// Open implements the older format.
func (PlainSealer) Open(sealed, _ []byte) ([]byte, error) {
	if len(sealed) == 0 || sealed[0] != 0 {
		return nil, errors.New("open: value is not plain-sealed")
	}
	return sealed[1:], nil
}

// AESGCMSealer is the format of values sealed before the keyring under
// webhooks.secret_key: version byte 1, nonce, AES-256-GCM ciphertext. Only read now.
type AESGCMSealer struct{ aead cipher.AEAD }

// NewAESGCMSealer returns a sealer keyed by a 32-byte key.
func NewAESGCMSealer(key []byte) (*AESGCMSealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("webhooks secret key: %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("webhooks secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("webhooks secret key: %w", err)
	}
	return &AESGCMSealer{aead: aead}, nil
}

// Seal implements Sealer.
func (s *AESGCMSealer) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := append([]byte{1}, nonce...)
	return s.aead.Seal(out, nonce, plaintext, aad), nil
}

// Open implements Sealer.
func (s *AESGCMSealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != 1 {
		return nil, errors.New("open: value is not AES-GCM sealed")
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	return plain, nil
}

// newSecret returns a fresh "whsec_<base64>" signing secret.
func newSecret() (string, error) {
	key := make([]byte, secretBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate webhook secret: %w", err)
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// secretKey decodes the HMAC key of a "whsec_" secret.
func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, secretPrefix))
	if err != nil {
		return nil, fmt.Errorf("decode webhook secret: %w", err)
	}
	return key, nil
}

// sign returns the Standard Webhooks signature header value for one message: a
// space-separated "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per key, so that
// during a rotation overlap both the new and the previous secret verify.
func sign(msgID string, ts time.Time, body []byte, keys ...[]byte) string {
	parts := make([]string, 0, len(keys))
	unix := strconv.FormatInt(ts.Unix(), 10)
	for _, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(msgID))
		mac.Write([]byte{'.'})
		mac.Write([]byte(unix))
		mac.Write([]byte{'.'})
		mac.Write(body)
		parts = append(parts, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(parts, " ")
}
