package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/audit"
	envelope "github.com/manushya-ai/manushya/pkg/keyring"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// Sensitive claims. The contract: a tenant lists claim names in
// TenantSettings.sensitive_claims; the value of a listed top-level claim, on any
// identity of the tenant, is never stored in identities.claims but sealed in
// identity.sensitive_claims under the identity's own data key, bound to the
// identity and the claim name (a value moved to another identity or name does
// not open). The API takes and returns such claims like any other (CreateIdentity,
// UpdateIdentity, BulkCreateIdentities, GetIdentity, GetMe, ListIdentities, and
// the identity of a sign-in's answer), opening them for callers
// allowed to read the identity; events carry "[redacted]" in their place, and
// the audit records of the request and the response redact them too. The policy
// engine's view of a caller's claims (PrincipalClaims) leaves them out. The list
// is per tenant rather than per request so that no client can forget to mark a
// value, and a value once sealed stays sealed until it is written again.

// fieldSensitiveClaim names the sealed column; it is bound into every
// ciphertext, so never rename it.
const fieldSensitiveClaim = "identity.sensitive_claims.sealed"

// sensitiveClaimRef seals a claim under its identity's key (erasing the identity
// shreds it), bound to "<identity>/<name>": the row_ref column the re-encryption
// job reads back.
func sensitiveClaimRef(tenant, identity uuid.UUID, name string) envelope.Ref {
	return envelope.Ref{Field: fieldSensitiveClaim, Scope: envelope.Identity(tenant, identity), Row: []byte(identity.String() + "/" + name)}
}

// registerSensitiveClaims declares the sealed column to the keyring (so the
// re-encryption job moves it on rotation) or, without one, to the fallback
// sealer.
func (s *Service) registerSensitiveClaims() error {
	if s.sealer == nil {
		return nil
	}
	if l, ok := s.sealer.(legacySealer); ok {
		l[fieldSensitiveClaim] = s.tokens.sealer
		return nil
	}
	err := s.sealer.Register(envelope.Field{
		Name: fieldSensitiveClaim, Table: "identity.sensitive_claims", Column: "sealed", Key: "row_ref",
		Tenant: "tenant_id", Identity: "identity_id",
	})
	if err != nil {
		return fmt.Errorf("identity: register sensitive claims: %w", err)
	}
	return nil
}

// sensitiveNamesOf reads the tenant's list in tx.
func sensitiveNamesOf(ctx context.Context, tx *store.Tx, tenant uuid.UUID) ([]string, error) {
	settings, err := settingsOf(ctx, tx, tenant)
	if err != nil {
		return nil, err
	}
	return settings.GetSensitiveClaims(), nil
}

// splitClaims takes the sensitive claims out of a claims JSON object: what is
// left goes to identities.claims, the rest is sealed.
func splitClaims(raw []byte, names []string) ([]byte, map[string]json.RawMessage, error) {
	if len(names) == 0 {
		return raw, nil, nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		return nil, nil, apierr.Field("claims", "must be a JSON object")
	}
	sensitive := map[string]json.RawMessage{}
	for _, n := range names {
		if v, ok := all[n]; ok {
			sensitive[n] = v
			delete(all, n)
		}
	}
	if len(sensitive) == 0 {
		return raw, nil, nil
	}
	plain, err := json.Marshal(all)
	if err != nil {
		return nil, nil, apierr.Internal(err)
	}
	return plain, sensitive, nil
}

// writeSensitiveClaims seals and stores an identity's sensitive claims in tx.
// With replace every stored one goes first (replace_claims, or a new identity);
// otherwise the given ones are merged in, like the plain claims.
func (s *Service) writeSensitiveClaims(ctx context.Context, tx *store.Tx, tenant, identity uuid.UUID, vals map[string]json.RawMessage, replace bool) error {
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	slices.Sort(names)
	if replace || len(names) > 0 {
		if err := tx.DeleteSensitiveClaims(ctx, sqlc.DeleteSensitiveClaimsParams{IdentityID: identity, ReplaceAll: replace, Names: nonNilStrings(names)}); err != nil {
			return fmt.Errorf("clear sensitive claims of identity %s: %w", identity, err)
		}
	}
	for _, n := range names {
		sealed, err := s.sealSensitive(ctx, tenant, identity, n, vals[n])
		if err != nil {
			return err
		}
		if err := tx.UpsertSensitiveClaim(ctx, sqlc.UpsertSensitiveClaimParams{TenantID: tenant, IdentityID: identity, Name: n, Sealed: sealed}); err != nil {
			return fmt.Errorf("store sensitive claim of identity %s: %w", identity, store.MapErr(err))
		}
	}
	return nil
}

func (s *Service) sealSensitive(ctx context.Context, tenant, identity uuid.UUID, name string, val []byte) ([]byte, error) {
	ref := sensitiveClaimRef(tenant, identity, name)
	var sealed []byte
	var err error
	if s.sealer != nil {
		sealed, err = s.sealer.Seal(ctx, ref, val)
	} else {
		sealed, err = s.tokens.sealer.Seal(val, ref.Row)
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("seal sensitive claim: %w", err))
	}
	return sealed, nil
}

func (s *Service) openSensitive(ctx context.Context, tenant, identity uuid.UUID, name string, sealed []byte) ([]byte, error) {
	ref := sensitiveClaimRef(tenant, identity, name)
	if s.sealer != nil {
		return s.sealer.Open(ctx, ref, sealed)
	}
	return s.tokens.sealer.Open(sealed, ref.Row)
}

// storedSensitive lists the sealed claims of the identities, by identity.
func storedSensitive(ctx context.Context, tx *store.Tx, ids []uuid.UUID) (map[uuid.UUID][]sqlc.ListSensitiveClaimsRow, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := tx.ListSensitiveClaims(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("list sensitive claims: %w", err)
	}
	out := map[uuid.UUID][]sqlc.ListSensitiveClaimsRow{}
	for _, r := range rows {
		out[r.IdentityID] = append(out[r.IdentityID], r)
	}
	return out, nil
}

// fillSensitiveClaims opens the sensitive claims of idents into their claims, for
// a caller allowed to read them. A value that does not open (moved from another
// identity, tampered with) is an internal error rather than a silent gap; one
// whose identity's keys were destroyed (erased) is left out.
func (s *Service) fillSensitiveClaims(ctx context.Context, tx *store.Tx, idents ...*identityv1.Identity) error {
	byID := map[uuid.UUID]*identityv1.Identity{}
	ids := make([]uuid.UUID, 0, len(idents))
	for _, ident := range idents {
		id, err := uuid.Parse(ident.GetId())
		if err != nil {
			continue
		}
		byID[id] = ident
		ids = append(ids, id)
	}
	stored, err := storedSensitive(ctx, tx, ids)
	if err != nil {
		return err
	}
	for id, rows := range stored {
		ident := byID[id]
		tenant, err := uuid.Parse(ident.GetTenantId())
		if err != nil {
			return apierr.Internal(err)
		}
		claims := ident.GetClaims()
		if claims == nil {
			claims = &structpb.Struct{}
			ident.Claims = claims
		}
		if claims.GetFields() == nil {
			claims.Fields = map[string]*structpb.Value{}
		}
		for _, r := range rows {
			plain, err := s.openSensitive(ctx, tenant, id, r.Name, r.Sealed)
			if errors.Is(err, envelope.ErrDestroyed) {
				delete(claims.GetFields(), r.Name)
				continue
			}
			if err != nil {
				return apierr.Internal(fmt.Errorf("open sensitive claim %q of identity %s: %w", r.Name, id, err))
			}
			v := &structpb.Value{}
			if err := v.UnmarshalJSON(plain); err != nil {
				return apierr.Internal(fmt.Errorf("decode sensitive claim %q of identity %s: %w", r.Name, id, err))
			}
			claims.GetFields()[r.Name] = v
		}
	}
	return nil
}

// fillSensitive runs fillSensitiveClaims in a transaction of its own, for answers
// built after the one that wrote them.
func (s *Service) fillSensitive(ctx context.Context, tenant uuid.UUID, idents ...*identityv1.Identity) error {
	return s.store.InTenant(ctx, tenant, func(tx *store.Tx) error { return s.fillSensitiveClaims(ctx, tx, idents...) })
}

// redactedForEvent is ident with "[redacted]" for each sensitive claim the
// identity holds: events say a claim exists, never its value.
func (s *Service) redactedForEvent(ctx context.Context, tx *store.Tx, ident *identityv1.Identity) *identityv1.Identity {
	id, err := uuid.Parse(ident.GetId())
	if err != nil {
		return ident
	}
	stored, err := storedSensitive(ctx, tx, []uuid.UUID{id})
	if err != nil || len(stored[id]) == 0 {
		if err != nil {
			s.logger.WarnContext(ctx, "list sensitive claims for an event", "err", err)
		}
		return ident
	}
	out := proto.Clone(ident).(*identityv1.Identity)
	claims := out.GetClaims()
	if claims == nil {
		claims = &structpb.Struct{}
		out.Claims = claims
	}
	if claims.GetFields() == nil {
		claims.Fields = map[string]*structpb.Value{}
	}
	for _, r := range stored[id] {
		claims.GetFields()[r.Name] = structpb.NewStringValue(audit.Redacted)
	}
	return out
}

// redactAudit tells the request's audit record to redact the tenant's sensitive
// claim names in the request and the response it records.
func redactAudit(ctx context.Context, names []string) {
	audit.RedactKeys(ctx, names...)
}

// sealExistingClaims moves the plain values of newly listed sensitive claims into
// sealed storage, in the tenant's transaction: a page of identities at a time,
// every identity of the tenant holding one of the names.
func (s *Service) sealExistingClaims(ctx context.Context, tx *store.Tx, tenant uuid.UUID, names []string) (int, error) {
	if len(names) == 0 {
		return 0, nil
	}
	moved := 0
	after := uuid.Nil
	for {
		rows, err := tx.ListIdentitiesWithClaims(ctx, sqlc.ListIdentitiesWithClaimsParams{Names: names, AfterID: after, PageLimit: 500})
		if err != nil {
			return moved, fmt.Errorf("list identities holding sensitive claims: %w", err)
		}
		for _, r := range rows {
			_, vals, err := splitClaims(r.Claims, names)
			if err != nil {
				return moved, err
			}
			if err := s.writeSensitiveClaims(ctx, tx, tenant, r.ID, vals, false); err != nil {
				return moved, err
			}
			if err := tx.RemoveClaims(ctx, sqlc.RemoveClaimsParams{ID: r.ID, Names: names}); err != nil {
				return moved, fmt.Errorf("remove plain sensitive claims: %w", err)
			}
			moved++
			after = r.ID
		}
		if len(rows) < 500 {
			return moved, nil
		}
	}
}

// addedNames are the names newly added to a sensitive_claims list.
func addedNames(before, after []string) []string {
	var out []string
	for _, n := range after {
		if !slices.Contains(before, n) {
			out = append(out, n)
		}
	}
	return out
}

// checkSensitiveNames checks a sensitive_claims list: top-level claim names, each
// once (protovalidate checks the same over gRPC; the REST gateway's PATCH and
// internal callers come here too).
func checkSensitiveNames(names []string) error {
	if len(names) > 64 {
		return apierr.Field("tenant.settings.sensitive_claims", "holds at most 64 names")
	}
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || len(n) > 256 {
			return apierr.Field("tenant.settings.sensitive_claims", "names must be 1 to 256 bytes")
		}
		if seen[n] {
			return apierr.Field("tenant.settings.sensitive_claims", "names %q twice", n)
		}
		seen[n] = true
	}
	return nil
}
