package memory

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/services/memory/store"
	"github.com/manushya-ai/manushya/services/memory/store/sqlc"
)

// The sealed fields of tenants with encrypt_text. The names are bound into every
// ciphertext: never rename them.
const (
	fieldText        = "memory.memories.text"
	fieldVersionText = "memory.memory_versions.text"
)

// textRef binds a memory's text to its row, under its owner identity's data key:
// destroying that key (erasing the identity) shreds the text wherever copies are.
func textRef(tenant, identity, id uuid.UUID) keyring.Ref {
	return keyring.Ref{Field: fieldText, Scope: keyring.Identity(tenant, identity), Row: id[:]}
}

// versionRow is the key a version row's ciphertext is bound to (the seal_row
// column, which the re-encryption job reads back).
func versionRow(id uuid.UUID, version int32) string {
	return id.String() + "/" + strconv.Itoa(int(version))
}

func versionTextRef(tenant, identity, id uuid.UUID, version int32) keyring.Ref {
	return keyring.Ref{Field: fieldVersionText, Scope: keyring.Identity(tenant, identity), Row: []byte(versionRow(id, version))}
}

// registerFields declares the sealed columns, so the keyring's re-encryption job
// re-seals them after a key rotation and knows which keys they still use.
func registerFields(kr keyring.Sealer) error {
	return kr.Register(
		keyring.Field{Name: fieldText, Table: "memory.memories", Column: "text_sealed", Key: "id",
			Tenant: "tenant_id", Identity: "identity_id"},
		keyring.Field{Name: fieldVersionText, Table: "memory.memory_versions", Column: "text_sealed", Key: "seal_row",
			Tenant: "tenant_id", Identity: "identity_id"},
	)
}

// errNoKeyring: a tenant asked for sealed text in a process built without the keyring.
var errNoKeyring = errors.New("memory text encryption needs the keyring, which this process was built without")

// encrypting reports whether new writes of the transaction's tenant seal their text.
func (s *Service) encrypting(ctx context.Context, tx *store.Tx, tenant uuid.UUID) (bool, error) {
	on, err := tx.EncryptText(ctx, tenant)
	if errors.Is(store.MapErr(err), store.ErrNotFound) {
		return false, nil
	}
	if err == nil && on && s.keys == nil {
		return false, errNoKeyring
	}
	return on, err
}

func (s *Service) seal(ctx context.Context, ref keyring.Ref, text string) ([]byte, error) {
	if s.keys == nil {
		return nil, errNoKeyring
	}
	b, err := s.keys.Seal(ctx, ref, []byte(text))
	if err != nil {
		return nil, fmt.Errorf("seal memory text: %w", err)
	}
	return b, nil
}

// openErr is what a reader sees when a sealed text does not open: the text of an
// erased identity (its key destroyed) is FAILED_PRECONDITION; anything else (a
// ciphertext moved from another row or tenant, tampered bytes, a missing key) is
// an internal error, logged and masked, and never another row's text.
func openErr(id uuid.UUID, err error) error {
	if errors.Is(err, keyring.ErrDestroyed) {
		return apierr.FailedPrecondition("the text of memory %s was erased: its identity's key was destroyed", id)
	}
	return apierr.Internal(fmt.Errorf("open the text of memory %s: %w", id, err))
}

// open fills in m.Text from its sealed form, if it has one.
func (s *Service) open(ctx context.Context, m *store.Memory) error {
	if m.TextSealed == nil {
		return nil
	}
	if s.keys == nil {
		return openErr(m.ID, errNoKeyring)
	}
	pt, err := s.keys.Open(ctx, textRef(m.TenantID, m.IdentityID, m.ID), m.TextSealed)
	if err != nil {
		return openErr(m.ID, err)
	}
	m.Text = string(pt)
	return nil
}

// openAll opens the texts of rows in place.
func (s *Service) openAll(ctx context.Context, rows []store.Memory) error {
	for i := range rows {
		if err := s.open(ctx, &rows[i]); err != nil {
			return err
		}
	}
	return nil
}

// openVersion fills in a version row's text from its sealed form, if it has one.
func (s *Service) openVersion(ctx context.Context, v *sqlc.MemoryMemoryVersion) error {
	if v.TextSealed == nil {
		return nil
	}
	if s.keys == nil || v.IdentityID == nil {
		return openErr(v.MemoryID, errNoKeyring)
	}
	pt, err := s.keys.Open(ctx, versionTextRef(v.TenantID, *v.IdentityID, v.MemoryID, v.Version), v.TextSealed)
	if err != nil {
		return openErr(v.MemoryID, err)
	}
	v.Text = string(pt)
	return nil
}

// stored is a text as a row stores it: plain, or sealed with an empty text column.
type stored struct {
	text   string
	sealed []byte
}

// storeText returns the stored form of a memory's text: sealed when enc is set.
func (s *Service) storeText(ctx context.Context, enc bool, m store.Memory) (stored, error) {
	if !enc {
		return stored{text: m.Text}, nil
	}
	b, err := s.seal(ctx, textRef(m.TenantID, m.IdentityID, m.ID), m.Text)
	return stored{sealed: b}, err
}

// versionParams fills in the text columns of a version row: plain, or sealed
// under the owner's key and bound to the memory and version.
func (s *Service) versionParams(ctx context.Context, enc bool, identity uuid.UUID, p sqlc.InsertVersionParams) (sqlc.InsertVersionParams, error) {
	if !enc {
		return p, nil
	}
	b, err := s.seal(ctx, versionTextRef(p.TenantID, identity, p.MemoryID, p.Version), p.Text)
	if err != nil {
		return p, err
	}
	row := versionRow(p.MemoryID, p.Version)
	p.Text, p.TextSealed, p.IdentityID, p.SealRow = "", b, &identity, &row
	return p, nil
}

// keywordAvailableIn refuses keyword and hybrid search for a tenant whose text is
// sealed (or still being moved either way): its rows have empty tsvectors, so a
// keyword search would silently find nothing. It runs in the search's own
// transaction, so it costs a plain tenant one primary-key read.
func keywordAvailableIn(ctx context.Context, tx *store.Tx, tenant uuid.UUID) error {
	v, err := tx.KeywordUnavailable(ctx, tenant)
	if err != nil {
		return err
	}
	if v != nil && *v {
		return apierr.FailedPrecondition("keyword and hybrid search are unavailable: this tenant's memory text is encrypted " +
			"(memory settings encrypt_text), so only vector search (mode SEARCH_MODE_VECTOR) is possible")
	}
	return nil
}

// keywordAvailable is keywordAvailableIn in a transaction of its own.
func (s *Service) keywordAvailable(ctx context.Context, tenant uuid.UUID) error {
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error { return keywordAvailableIn(ctx, tx, tenant) })
	if err != nil {
		return s.mapErr(err, "")
	}
	return nil
}

// openHits opens the texts of search hits in place.
func (s *Service) openHits(ctx context.Context, arms ...[]hit) error {
	for _, hits := range arms {
		for i := range hits {
			if err := s.open(ctx, &hits[i].m); err != nil {
				return err
			}
		}
	}
	return nil
}
