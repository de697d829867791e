package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Sealer encrypts and authenticates small secrets for storage.
type Sealer interface {
	// Seal encrypts plaintext bound to aad.
	Seal(plaintext, aad []byte) ([]byte, error)
	// Open decrypts a value sealed with the same aad, or fails with ErrOpen.
	Open(ciphertext, aad []byte) ([]byte, error)
}

// ErrOpen is returned for any ciphertext that cannot be opened: unknown key id,
// tampered bytes, wrong associated data. It says nothing more on purpose.
var ErrOpen = errors.New("secretbox: cannot open sealed value")

const (
	version  = 1
	keyLen   = 32
	maxKeyID = 255
)

// Box seals under one 32-byte key identified by a short id.
type Box struct {
	id   string
	aead cipher.AEAD
}

// New returns a Box for a 32-byte key. The id is stored with every sealed value
// (at most 255 bytes; a short name such as "k1" or a date is enough).
func New(id string, key []byte) (*Box, error) {
	if len(key) != keyLen {
		return nil, fmt.Errorf("secretbox: key must be %d bytes, got %d", keyLen, len(key))
	}
	if id == "" || len(id) > maxKeyID {
		return nil, errors.New("secretbox: key id must be 1 to 255 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	return &Box{id: id, aead: aead}, nil
}

// ParseKey decodes a configured key: 64 hex characters or standard/URL base64 of
// 32 bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == keyLen {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == keyLen {
			return b, nil
		}
	}
	return nil, errors.New("secretbox: key must be 32 bytes as 64 hex characters or base64")
}

// ID returns the key id.
func (b *Box) ID() string { return b.id }

// Seal implements Sealer.
func (b *Box) Seal(plaintext, aad []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	out := make([]byte, 0, 2+len(b.id)+ns+len(plaintext)+b.aead.Overhead())
	out = append(out, version, byte(len(b.id)))
	out = append(out, b.id...)
	nonce := make([]byte, ns)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secretbox: nonce: %w", err)
	}
	out = append(out, nonce...)
	return b.aead.Seal(out, nonce, plaintext, b.aadFor(aad)), nil
}

// aadFor binds the header to the ciphertext, so the key id cannot be swapped.
func (b *Box) aadFor(aad []byte) []byte {
	h := make([]byte, 0, 2+len(b.id)+len(aad))
	h = append(h, version, byte(len(b.id)))
	h = append(h, b.id...)
	return append(h, aad...)
}

// Open implements Sealer.
func (b *Box) Open(ciphertext, aad []byte) ([]byte, error) {
	id, body, ok := split(ciphertext)
	if !ok || id != b.id {
		return nil, ErrOpen
	}
	return b.open(body, aad)
}

func (b *Box) open(body, aad []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	if len(body) < ns+b.aead.Overhead() {
		return nil, ErrOpen
	}
	pt, err := b.aead.Open(nil, body[:ns], body[ns:], b.aadFor(aad))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// KeyID returns the id of the key a value was sealed under, for rotation jobs.
func KeyID(ciphertext []byte) (string, bool) {
	id, _, ok := split(ciphertext)
	return id, ok
}

func split(c []byte) (id string, body []byte, ok bool) {
	if len(c) < 2 || c[0] != version {
		return "", nil, false
	}
	n := int(c[1])
	if len(c) < 2+n {
		return "", nil, false
	}
	return string(c[2 : 2+n]), c[2+n:], true
}

// Keyring seals under its current key and opens values sealed under any of its keys.
type Keyring struct {
	current *Box
	byID    map[string]*Box
}

// NewKeyring returns a keyring sealing with current and also opening values sealed
// under old.
func NewKeyring(current *Box, old ...*Box) *Keyring {
	k := &Keyring{current: current, byID: map[string]*Box{current.id: current}}
	for _, b := range old {
		if _, dup := k.byID[b.id]; !dup {
			k.byID[b.id] = b
		}
	}
	return k
}

// Seal implements Sealer with the current key.
func (k *Keyring) Seal(plaintext, aad []byte) ([]byte, error) { return k.current.Seal(plaintext, aad) }

// Open implements Sealer with whichever key the value names.
func (k *Keyring) Open(ciphertext, aad []byte) ([]byte, error) {
	id, body, ok := split(ciphertext)
	if !ok {
		return nil, ErrOpen
	}
	b, found := k.byID[id]
	if !found {
		return nil, ErrOpen
	}
	return b.open(body, aad)
}

// NeedsRotation reports whether a value was sealed under a key other than the
// current one.
func (k *Keyring) NeedsRotation(ciphertext []byte) bool {
	id, ok := KeyID(ciphertext)
	return !ok || id != k.current.id
}

var (
	_ Sealer = (*Box)(nil)
	_ Sealer = (*Keyring)(nil)
)
