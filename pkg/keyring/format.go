package keyring

import (
	"encoding/binary"

	"github.com/google/uuid"
)

// A sealed value reads:
//
//	magic (1 byte, 'k') | scope kind (1) | Tink ciphertext
//
// and the Tink ciphertext of an AES-256-GCM key with the TINK prefix reads:
//
//	0x01 | key id (4 bytes, big endian) | IV (12) | ciphertext | tag (16)
//
// The key id names the data-key version within the scope, so values sealed before a
// rotation keep opening and the re-encryption job can tell which rows still use an
// old key without decrypting them. The values the older secretbox and webhooks
// sealers wrote start with 0x00 or 0x01, never with the magic, so both formats can
// live in one column during the migration.
const (
	magic         byte = 'k'
	tinkPrefix    byte = 0x01
	tinkPrefixLen      = 5
	ivLen              = 12
	tagLen             = 16
	headerLen          = 2
	// Overhead is how many bytes sealing adds to a plaintext.
	Overhead = headerLen + tinkPrefixLen + ivLen + tagLen
)

// Scope kinds, stored in every ciphertext and bound into its associated data.
const (
	KindSystem   byte = 0
	KindTenant   byte = 1
	KindIdentity byte = 2
)

// Header is what a sealed value says about itself without being opened.
type Header struct {
	// Kind is the scope kind (KindSystem, KindTenant, KindIdentity).
	Kind byte
	// KeyID is the data-key version within the scope.
	KeyID uint32
}

// Parse reads the header of a sealed value. ok is false for anything that is not a
// well-formed keyring ciphertext (including the older formats).
func Parse(c []byte) (h Header, ok bool) {
	if len(c) < Overhead || c[0] != magic || c[1] > KindIdentity || c[2] != tinkPrefix {
		return Header{}, false
	}
	return Header{Kind: c[1], KeyID: binary.BigEndian.Uint32(c[3:7])}, true
}

// IsSealed reports whether c is in the keyring format (as opposed to plain bytes or
// an older format).
func IsSealed(c []byte) bool {
	_, ok := Parse(c)
	return ok
}

// aadLabel starts every associated data, so a keyring ciphertext can never be
// confused with another use of the same key.
const aadLabel = "manushya keyring v1"

// associatedData binds a ciphertext to its record: the scope kind, the field, the
// tenant, the identity and the row. Every variable part is length-prefixed, so no
// two records share associated data.
func associatedData(kind byte, ref Ref) []byte {
	b := make([]byte, 0, len(aadLabel)+1+2+len(ref.Field)+32+4+len(ref.Row))
	b = append(b, aadLabel...)
	b = append(b, kind)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ref.Field)))
	b = append(b, ref.Field...)
	b = append(b, ref.Scope.Tenant[:]...)
	b = append(b, ref.Scope.Identity[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ref.Row)))
	return append(b, ref.Row...)
}

// wrapAD is the associated data under which a data key is wrapped by the KEK: a
// wrapped key copied to another scope or key id does not unwrap.
func wrapAD(s Scope, keyID uint32) []byte {
	const label = "manushya keyring dek v1"
	b := make([]byte, 0, len(label)+36)
	b = append(b, label...)
	b = append(b, s.Tenant[:]...)
	b = append(b, s.Identity[:]...)
	return binary.BigEndian.AppendUint32(b, keyID)
}

// Scope is whose data key seals a value.
type Scope struct {
	Tenant   uuid.UUID
	Identity uuid.UUID
}

// System is the scope of secrets that belong to no tenant (token-signing keys).
func System() Scope { return Scope{} }

// Tenant is the scope of a tenant's secrets.
func Tenant(tenant uuid.UUID) Scope { return Scope{Tenant: tenant} }

// Identity is the scope of one identity's secrets: destroying it (GDPR erasure)
// makes them unreadable without touching the rest of the tenant.
func Identity(tenant, identity uuid.UUID) Scope { return Scope{Tenant: tenant, Identity: identity} }

// Kind returns the scope's kind; ok is false for an identity without a tenant.
func (s Scope) Kind() (kind byte, ok bool) {
	switch {
	case s.Tenant == uuid.Nil && s.Identity == uuid.Nil:
		return KindSystem, true
	case s.Tenant == uuid.Nil:
		return 0, false
	case s.Identity == uuid.Nil:
		return KindTenant, true
	default:
		return KindIdentity, true
	}
}

func (s Scope) String() string {
	kind, _ := s.Kind()
	switch kind {
	case KindSystem:
		return "system"
	case KindTenant:
		return "tenant " + s.Tenant.String()
	default:
		return "tenant " + s.Tenant.String() + " identity " + s.Identity.String()
	}
}

// Ref names the record a value is sealed for; it becomes the associated data, so a
// ciphertext moved to another row, field, identity or tenant does not open.
type Ref struct {
	// Field is the field's Name (see Field).
	Field string
	// Scope is whose data key seals the value.
	Scope Scope
	// Row is the row's key: the bytes of its UUID, its text, or its bytea.
	Row []byte
}
