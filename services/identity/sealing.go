package identity

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	envelope "github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/secretbox"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// Sealer keeps the service's secrets at rest: signing keys, TOTP secrets and
// refresh-token successors. The composition root passes the shared keyring
// (envelope encryption, pkg/keyring, imported as envelope: this package has its
// own signing-key type named keyring); without one the service seals with the older
// secretbox keys, as before the envelope.
type Sealer = envelope.Sealer

// The sealed fields. The names are bound into every ciphertext: never rename them.
const (
	fieldSigningKey = "identity.signing_keys.private_key"
	fieldTOTP       = "identity.mfa_totp.secret_sealed"
	fieldSuccessor  = "identity.refresh_tokens.successor"
)

// signingKeyRef: signing keys belong to no tenant (system scope), bound to the kid.
func signingKeyRef(kid string) envelope.Ref {
	return envelope.Ref{Field: fieldSigningKey, Scope: envelope.System(), Row: []byte(kid)}
}

// totpRef: a TOTP secret is sealed under its identity's own key, so erasing the
// identity can destroy it.
func totpRef(tenant, identity uuid.UUID) envelope.Ref {
	return envelope.Ref{Field: fieldTOTP, Scope: envelope.Identity(tenant, identity), Row: identity[:]}
}

// successorRef: a refresh successor lives seconds, under the tenant's key, bound to
// the spent token's hash.
func successorRef(tenant uuid.UUID, tokenHash []byte) envelope.Ref {
	return envelope.Ref{Field: fieldSuccessor, Scope: envelope.Tenant(tenant), Row: tokenHash}
}

// newSealer returns the keyring with the service's fields registered, their
// values from before the keyring opening with the older keys (the re-encryption
// job moves them), or, without a keyring, a sealer over those older keys.
func newSealer(cfg Config, kr envelope.Sealer) (Sealer, error) {
	tokensOld, err := legacyTokenSealer(cfg.Tokens.EncryptionKey, cfg.APIKeyPepper)
	if err != nil {
		return nil, err
	}
	mfaOld, err := mfaSealer(cfg.MFA, cfg.APIKeyPepper)
	if err != nil {
		return nil, err
	}
	if kr == nil {
		return legacySealer{fieldSigningKey: tokensOld, fieldSuccessor: tokensOld, fieldTOTP: mfaOld}, nil
	}
	open := func(s secretbox.Sealer) func(envelope.Ref, []byte) ([]byte, error) {
		return func(ref envelope.Ref, sealed []byte) ([]byte, error) { return s.Open(sealed, ref.Row) }
	}
	err = kr.Register(
		envelope.Field{Name: fieldSigningKey, Table: "identity.signing_keys", Column: "private_key", Key: "kid", Legacy: open(tokensOld)},
		envelope.Field{Name: fieldTOTP, Table: "identity.mfa_totp", Column: "secret_sealed", Key: "identity_id",
			Tenant: "tenant_id", Identity: "identity_id", Legacy: open(mfaOld)},
		envelope.Field{Name: fieldSuccessor, Table: "identity.refresh_tokens", Column: "successor", Key: "token_hash",
			Tenant: "tenant_id", Legacy: open(tokensOld)},
	)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return kr, nil
}

// legacyTokenSealer opens signing keys and successors sealed before the keyring:
// under the configured key (id "kek1") or the key derived from the pepper
// ("pepper1"), whichever the value names.
func legacyTokenSealer(kek, pepper string) (*secretbox.Keyring, error) {
	derived, err := hkdf.Key(sha256.New, []byte(pepper), nil, "manushya identity token-encryption key", 32)
	if err != nil {
		return nil, fmt.Errorf("derive token encryption key: %w", err)
	}
	fromPepper, err := secretbox.New("pepper1", derived)
	if err != nil {
		return nil, err
	}
	if kek == "" {
		return secretbox.NewKeyring(fromPepper), nil
	}
	cur, err := deriveSealer(kek, pepper)
	if err != nil {
		return nil, err
	}
	return secretbox.NewKeyring(cur, fromPepper), nil
}

// legacySealer seals with the secretbox keys per field, for a service built
// without the keyring (tests, tools); it binds the same row bytes as before.
type legacySealer map[string]secretbox.Sealer

func (l legacySealer) Seal(_ context.Context, ref envelope.Ref, plaintext []byte) ([]byte, error) {
	s, ok := l[ref.Field]
	if !ok {
		return nil, fmt.Errorf("%w: %q", envelope.ErrUnknownField, ref.Field)
	}
	return s.Seal(plaintext, ref.Row)
}

func (l legacySealer) Open(_ context.Context, ref envelope.Ref, ciphertext []byte) ([]byte, error) {
	s, ok := l[ref.Field]
	if !ok {
		return nil, fmt.Errorf("%w: %q", envelope.ErrUnknownField, ref.Field)
	}
	return s.Open(ciphertext, ref.Row)
}

func (legacySealer) Register(...envelope.Field) error { return nil }

// TenantIDs lists tenants for the keyring's re-encryption job, from the tenant
// registry (not tenant-scoped).
func TenantIDs(pool *pgxpool.Pool) envelope.TenantLister {
	q := store.New(pool).Global()
	return func(ctx context.Context, after uuid.UUID, limit int) ([]uuid.UUID, error) {
		var a *uuid.UUID
		if after != uuid.Nil {
			a = &after
		}
		ts, err := q.ListTenants(ctx, sqlc.ListTenantsParams{AfterID: a, PageLimit: int32(limit)})
		if err != nil {
			return nil, err
		}
		ids := make([]uuid.UUID, len(ts))
		for i, t := range ts {
			ids[i] = t.ID
		}
		return ids, nil
	}
}
