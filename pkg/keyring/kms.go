package keyring

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/tink-crypto/tink-go/v2/aead/subtle"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/manushya-ai/manushya/pkg/secretbox"
)

// KMS wraps and unwraps data keys under a key-encryption key (KEK). LocalKMS keeps
// the KEK in process memory (from the configuration); a cloud KMS implements the
// same three methods, so the KEK never leaves it.
type KMS interface {
	// KeyID names the KEK that Wrap uses now. It is stored with every wrapped data
	// key, so a rotated KEK can still unwrap what it wrapped.
	KeyID() string
	// Wrap encrypts a data key bound to aad.
	Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Unwrap decrypts a data key wrapped under the KEK named keyID. It fails with an
	// error matching ErrUnknownKEK when it does not have that KEK.
	Unwrap(ctx context.Context, keyID string, wrapped, aad []byte) ([]byte, error)
}

// ErrUnknownKEK is returned by Unwrap for a KEK the KMS does not hold.
var ErrUnknownKEK = errors.New("keyring: data key is wrapped under a key-encryption key this process does not have (check encryption.kek and encryption.previous_keks)")

// LocalKMS wraps with AES-256-GCM (Tink) under KEKs held in memory: the current one
// wraps, the previous ones still unwrap until the re-encryption job has re-wrapped
// every data key.
type LocalKMS struct {
	current string
	keks    map[string]tink.AEAD
}

// NewLocalKMS returns a KMS over 32-byte KEKs: current, and previous ones kept for
// unwrapping.
func NewLocalKMS(current []byte, previous ...[]byte) (*LocalKMS, error) {
	k := &LocalKMS{keks: map[string]tink.AEAD{}}
	for i, key := range append([][]byte{current}, previous...) {
		if len(key) != 32 {
			return nil, fmt.Errorf("keyring: key-encryption key must be 32 bytes, got %d", len(key))
		}
		a, err := subtle.NewAESGCM(key)
		if err != nil {
			return nil, fmt.Errorf("keyring: key-encryption key: %w", err)
		}
		id := KEKID(key)
		if i == 0 {
			k.current = id
		}
		k.keks[id] = a
	}
	return k, nil
}

// KEKID names a local KEK without revealing it: an HMAC of a fixed label under the
// key, so operators can tell which key wrapped what.
func KEKID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("manushya keyring kek id"))
	return "local:" + hex.EncodeToString(m.Sum(nil)[:8])
}

// KeyID implements KMS.
func (k *LocalKMS) KeyID() string { return k.current }

// Wrap implements KMS.
func (k *LocalKMS) Wrap(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	return k.keks[k.current].Encrypt(plaintext, aad)
}

// Unwrap implements KMS.
func (k *LocalKMS) Unwrap(_ context.Context, keyID string, wrapped, aad []byte) ([]byte, error) {
	a, ok := k.keks[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownKEK, keyID)
	}
	return a.Decrypt(wrapped, aad)
}

// ParseKEK decodes a configured KEK: 64 hex characters or base64 of 32 bytes.
func ParseKEK(s string) ([]byte, error) {
	k, err := secretbox.ParseKey(s)
	if err != nil {
		return nil, errors.New("keyring: key-encryption key must be 32 bytes as 64 hex characters or base64")
	}
	return k, nil
}

// ParseKEKs decodes a comma-separated list of KEKs (encryption.previous_keks).
func ParseKEKs(s string) ([][]byte, error) {
	var out [][]byte
	for i, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, err := ParseKEK(part)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// DeriveKEK derives a KEK from another secret of the deployment (the API key
// pepper) under its own label, for deployments that configure no KEK.
func DeriveKEK(secret string) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, "manushya keyring key-encryption key", 32)
	if err != nil {
		return nil, fmt.Errorf("keyring: derive key-encryption key: %w", err)
	}
	return k, nil
}

// kekAEAD lets Tink's encrypted-keyset functions wrap through a KMS: encryption with
// the current KEK, decryption with the KEK a row names.
type kekAEAD struct {
	kms   KMS
	keyID string
	// err keeps the KMS's error, which Tink reports only as text.
	err *error
}

func (a kekAEAD) EncryptWithContext(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	return a.kms.Wrap(ctx, plaintext, aad)
}

func (a kekAEAD) DecryptWithContext(ctx context.Context, ciphertext, aad []byte) ([]byte, error) {
	pt, err := a.kms.Unwrap(ctx, a.keyID, ciphertext, aad)
	if err != nil && a.err != nil {
		*a.err = err
	}
	return pt, err
}

var (
	_ KMS                  = (*LocalKMS)(nil)
	_ tink.AEADWithContext = kekAEAD{}
)
