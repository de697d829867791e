package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/erasure"
	envelope "github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/pagination"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// Receipt states and subject kinds as stored in identity.erasures.
const (
	erasureInProgress = "in_progress"
	erasureCompleted  = "completed"
	subjectIdentity   = "identity"
	subjectTenant     = "tenant"
)

// erasureConsumer is the durable consumer that adds the services' reports to the
// receipts.
const erasureConsumer = "identity-erasure-receipts"

// keyDestroyer is the part of the keyring that crypto-shreds a scope. The
// identity service's Sealer is the shared keyring in the binary; the older
// secretbox sealer of tests and tools has no per-identity keys to destroy.
type keyDestroyer interface {
	Destroy(ctx context.Context, s envelope.Scope) (int, error)
}

// erasedCount is one line of a receipt's counts column.
type erasedCount struct {
	Service string `json:"service"`
	Kind    string `json:"kind"`
	Count   int64  `json:"count"`
}

// erasureServer implements ErasureService.
type erasureServer struct {
	identityv1.UnimplementedErasureServiceServer
	svc *Service
}

func (s *erasureServer) EraseIdentity(ctx context.Context, req *identityv1.EraseIdentityRequest) (*identityv1.EraseIdentityResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	rec, err := s.svc.EraseIdentity(ctx, tenant, id, requester(p), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &identityv1.EraseIdentityResponse{Receipt: rec}, nil
}

func (s *erasureServer) GetErasureReceipt(ctx context.Context, req *identityv1.GetErasureReceiptRequest) (*identityv1.GetErasureReceiptResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	var rec *identityv1.ErasureReceipt
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err := tx.GetErasure(ctx, id)
		if err != nil {
			return err
		}
		rec, err = receiptToProto(row)
		return err
	})
	if errors.Is(err, store.ErrNotFound) && p.IsOperator() {
		// An erased tenant's receipt belongs to no live tenant (erasure_tenant.go).
		rec, err = s.svc.tenantReceipt(ctx, id)
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, apierr.NotFound("erasure receipt", req.GetId())
		}
		return nil, err
	}
	return &identityv1.GetErasureReceiptResponse{Receipt: rec}, nil
}

func (s *erasureServer) ListErasureReceipts(ctx context.Context, req *identityv1.ListErasureReceiptsRequest) (*identityv1.ListErasureReceiptsResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	fp := pagination.Fingerprint("erasures")
	after, err := pagination.DecodeUUID(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	size := pagination.Size(req.GetPageSize())
	resp := &identityv1.ListErasureReceiptsResponse{}
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err := tx.ListErasures(ctx, sqlc.ListErasuresParams{AfterID: after, PageLimit: size + 1})
		if err != nil {
			return err
		}
		if len(rows) > int(size) {
			rows = rows[:size]
			resp.NextPageToken = pagination.Encode(rows[len(rows)-1].ID.String(), fp)
		}
		for _, r := range rows {
			rec, err := receiptToProto(r)
			if err != nil {
				return err
			}
			resp.Receipts = append(resp.Receipts, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// requester names who asked for an erasure on its receipt: an identity, else the
// API key, else the operator. Ids only.
func requester(p *auth.Principal) string {
	switch {
	case p.IdentityID != "":
		return p.IdentityID
	case p.APIKeyID != "":
		return p.APIKeyID
	case p.IsOperator():
		return "operator"
	}
	return ""
}

// EraseIdentity erases an identity of tenant: in one transaction its rows here go
// (the hard delete: the identity and what cascades from it, sessions and refresh
// tokens, API keys and their prefixes, MFA factors, SSO links; plus the
// invitations it accepted or sent), the receipt is written and identity.erased is
// announced; then its data key is destroyed. The other services' parts follow on
// the bus. Erasing an identity that is already erased returns its receipt again
// (and finishes the key destruction if that failed the first time).
func (s *Service) EraseIdentity(ctx context.Context, tenant, id uuid.UUID, requestedBy, reason string) (*identityv1.ErasureReceipt, error) {
	var (
		row sqlc.IdentityErasure
		f   fallout
	)
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		// The lock orders concurrent erasures of one identity: the second finds the
		// identity gone and the first one's receipt.
		if _, err := tx.LockIdentity(ctx, id); err != nil {
			if err := store.MapErr(err); !errors.Is(err, store.ErrNotFound) {
				return err
			}
			prev, err := tx.GetErasureOfSubject(ctx, sqlc.GetErasureOfSubjectParams{SubjectKind: subjectIdentity, SubjectID: id})
			if err := store.MapErr(err); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return apierr.NotFound("identity", id.String())
				}
				return err
			}
			row = prev
			return nil
		}
		counts, err := s.eraseIdentityRows(ctx, tx, tenant, id, &f)
		if err != nil {
			return err
		}
		row, err = s.createReceipt(ctx, tx, tenant, subjectIdentity, id, requestedBy, reason, counts, s.erasureParties())
		if err != nil {
			return err
		}
		// The subject is the identity, as for identity.deleted: the API-key caches
		// of every process evict its keys on it.
		ev, err := bus.NewEvent(tenant.String(), erasure.EventIdentityErased, EventSource, id.String(),
			erasure.Erased{ErasureID: row.ID.String(), IdentityID: id.String()})
		if err != nil {
			return err
		}
		return tx.Emit(ctx, ev)
	})
	if err != nil {
		return nil, err
	}
	s.settle(ctx, &f)
	if slices.Contains(row.PendingServices, erasure.ServiceKeyring) {
		if row, err = s.destroyKeys(ctx, tenant, row, envelope.Identity(tenant, id)); err != nil {
			return nil, err
		}
	}
	return receiptToProto(row)
}

// eraseIdentityRows removes everything this schema holds about an identity and
// returns the counts for the receipt. It reuses the hard delete, which revokes
// the identity's sessions (so its access tokens are refused at once) and drops
// its API keys from the caches once the transaction commits (through f).
func (s *Service) eraseIdentityRows(ctx context.Context, tx *store.Tx, tenant, id uuid.UUID, f *fallout) ([]erasedCount, error) {
	n, err := tx.CountIdentityErasable(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("count identity rows: %w", err)
	}
	if err := tx.DeleteIdentityAPIKeyPrefixes(ctx, id); err != nil {
		return nil, fmt.Errorf("delete api key prefixes: %w", err)
	}
	prefixes, err := tx.DeleteIdentityInvitations(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("delete invitations: %w", err)
	}
	if len(prefixes) > 0 {
		if err := tx.DeleteInvitationTokenPrefixes(ctx, prefixes); err != nil {
			return nil, fmt.Errorf("delete invitation prefixes: %w", err)
		}
	}
	if _, err := tx.ForgetAPIKeyCreator(ctx, &id); err != nil {
		return nil, fmt.Errorf("forget api key creator: %w", err)
	}
	_, item, err := s.removeIdentity(ctx, tx, tenant, id, true, true)
	if err != nil {
		return nil, err
	}
	f.add(item)
	c := func(kind string, count int64) erasedCount {
		return erasedCount{Service: erasure.ServiceIdentity, Kind: kind, Count: count}
	}
	return []erasedCount{
		c("identities", 1), c("sessions", n.Sessions), c("refresh_tokens", n.RefreshTokens),
		c("api_keys", n.ApiKeys), c("mfa_factors", n.MfaFactors), c("mfa_backup_codes", n.MfaBackupCodes),
		c("sso_links", n.SsoLinks), c("invitations", int64(len(prefixes))),
	}, nil
}

// revokeErasedSessions revokes the live sessions of an identity being erased, as
// revokeIdentitySessions does, but its session.revoked events carry only what
// verifiers need (the session and identity ids and the revocation time): the
// session's client address and user agent are personal data, and the events
// outlive the erasure in the stream and the event store.
func (s *Service) revokeErasedSessions(ctx context.Context, tx *store.Tx, tenant, identity uuid.UUID, except *uuid.UUID, reason string) ([]sqlc.IdentitySession, error) {
	rows, err := tx.RevokeIdentitySessions(ctx, sqlc.RevokeIdentitySessionsParams{Reason: reason, IdentityID: identity, ExceptID: except})
	if err != nil {
		return nil, fmt.Errorf("revoke sessions: %w", err)
	}
	until := time.Now().Add(auth.MaxAccessTokenTTL + time.Minute)
	for _, sess := range rows {
		if err := tx.AddRevokedSession(ctx, sqlc.AddRevokedSessionParams{SessionID: sess.ID, UntilTime: until}); err != nil {
			return nil, fmt.Errorf("record revoked session: %w", err)
		}
		revoked := &identityv1.Session{Id: sess.ID.String(), IdentityId: identity.String(), TenantId: tenant.String()}
		if sess.RevokeTime != nil {
			revoked.RevokeTime = timestamppb.New(*sess.RevokeTime)
		}
		if err := s.emit(ctx, tx, tenant, auth.SessionRevokedEvent, sess.ID.String(), revoked); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// createReceipt writes a new receipt in tx.
func (s *Service) createReceipt(ctx context.Context, tx *store.Tx, tenant uuid.UUID, kind string, subject uuid.UUID, requestedBy, reason string, counts []erasedCount, pending []string) (sqlc.IdentityErasure, error) {
	raw, err := json.Marshal(counts)
	if err != nil {
		return sqlc.IdentityErasure{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return sqlc.IdentityErasure{}, err
	}
	row, err := tx.CreateErasure(ctx, sqlc.CreateErasureParams{
		ID: id, TenantID: tenant, SubjectKind: kind, SubjectID: subject, RequestedBy: requestedBy,
		Reason: reason, State: erasureInProgress, Counts: raw, PendingServices: pending,
	})
	if err != nil {
		return row, fmt.Errorf("create erasure receipt: %w", store.MapErr(err))
	}
	return row, nil
}

// destroyKeys crypto-shreds scope and records it on the receipt as the keyring's
// part. A failure leaves "keyring" pending; erasing again retries it.
func (s *Service) destroyKeys(ctx context.Context, tenant uuid.UUID, row sqlc.IdentityErasure, scope envelope.Scope) (sqlc.IdentityErasure, error) {
	d, ok := s.sealer.(keyDestroyer)
	if !ok {
		return row, nil
	}
	n, err := d.Destroy(ctx, scope)
	if err != nil {
		return row, apierr.Internal(fmt.Errorf("destroy data keys of erasure %s: %w", row.ID, err))
	}
	updated, err := s.RecordErasureProgress(ctx, tenant, erasure.Progress{
		ErasureID: row.ID.String(), Service: erasure.ServiceKeyring,
		Counts: []erasure.Count{{Kind: "data_keys", Count: int64(n)}},
	})
	if err != nil {
		return row, err
	}
	if updated != nil {
		row = *updated
	}
	return row, nil
}

// RecordErasureProgress adds one service's report to its receipt and, with the
// last pending service, completes the receipt and announces it. A report of a
// service that is not pending (a redelivery, or an unknown receipt) changes
// nothing and returns nil: nothing is counted twice.
func (s *Service) RecordErasureProgress(ctx context.Context, tenant uuid.UUID, p erasure.Progress) (*sqlc.IdentityErasure, error) {
	id, err := uuid.Parse(p.ErasureID)
	if err != nil {
		return nil, fmt.Errorf("erasure progress: erasure_id %q: %w", p.ErasureID, err)
	}
	counts := make([]erasedCount, 0, len(p.Counts))
	for _, c := range p.Counts {
		counts = append(counts, erasedCount{Service: p.Service, Kind: c.Kind, Count: c.Count})
	}
	raw, err := json.Marshal(counts)
	if err != nil {
		return nil, err
	}
	var out *sqlc.IdentityErasure
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err := tx.RecordErasureProgress(ctx, sqlc.RecordErasureProgressParams{Counts: raw, Service: p.Service, ID: id})
		if err := store.MapErr(err); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		out = &row
		if row.State != erasureCompleted {
			return nil
		}
		typ := erasure.EventIdentityCompleted
		if row.SubjectKind == subjectTenant {
			typ = erasure.EventTenantCompleted
		}
		ev, err := bus.NewEvent(tenant.String(), typ, EventSource, row.SubjectID.String(),
			erasure.Completed{ErasureID: row.ID.String(), SubjectID: row.SubjectID.String()})
		if err != nil {
			return err
		}
		return tx.Emit(ctx, ev)
	})
	if err != nil {
		return nil, fmt.Errorf("record erasure progress: %w", err)
	}
	return out, nil
}

// consumeErasureProgress adds the services' erasure.progress reports to the
// receipts until ctx ends.
func (s *Service) consumeErasureProgress(ctx context.Context, b *bus.Bus) error {
	return erasure.Consume(ctx, b, erasureConsumer, []string{erasure.EventProgress}, s.logger,
		func(ctx context.Context, ev bus.Event) error {
			tenant, err := uuid.Parse(ev.Tenant)
			if err != nil {
				return nil // not a tenant's event: nothing to record
			}
			var p erasure.Progress
			if err := json.Unmarshal(ev.Data, &p); err != nil || p.Service == "" {
				s.logger.WarnContext(ctx, "erasure progress not understood; dropped", "event", ev.ID, "err", err)
				return nil
			}
			if _, err := uuid.Parse(p.ErasureID); err != nil {
				s.logger.WarnContext(ctx, "erasure progress names no erasure; dropped", "event", ev.ID)
				return nil
			}
			_, err = s.RecordErasureProgress(ctx, tenant, p)
			return err
		})
}

func receiptToProto(r sqlc.IdentityErasure) (*identityv1.ErasureReceipt, error) {
	var counts []erasedCount
	if err := json.Unmarshal(r.Counts, &counts); err != nil {
		return nil, fmt.Errorf("erasure %s counts: %w", r.ID, err)
	}
	out := &identityv1.ErasureReceipt{
		Id: r.ID.String(), TenantId: r.TenantID.String(), SubjectId: r.SubjectID.String(),
		RequestedBy: r.RequestedBy, Reason: r.Reason, PendingServices: r.PendingServices,
		RequestedAt: timestamppb.New(r.RequestedAt),
		SubjectKind: identityv1.ErasureSubjectKind_ERASURE_SUBJECT_KIND_IDENTITY,
		State:       identityv1.ErasureState_ERASURE_STATE_IN_PROGRESS,
	}
	if r.SubjectKind == subjectTenant {
		out.SubjectKind = identityv1.ErasureSubjectKind_ERASURE_SUBJECT_KIND_TENANT
	}
	if r.State == erasureCompleted {
		out.State = identityv1.ErasureState_ERASURE_STATE_COMPLETED
	}
	if r.CompletedAt != nil {
		out.CompletedAt = timestamppb.New(*r.CompletedAt)
	}
	for _, c := range counts {
		out.Counts = append(out.Counts, &identityv1.ErasedCount{Service: c.Service, Kind: c.Kind, Count: c.Count})
	}
	return out, nil
}

// erasureParties are the services an erasure waits for: the data holders, and
// the keyring when the service seals with one (its keys are destroyed after the
// rows).
func (s *Service) erasureParties() []string {
	pending := slices.Clone(erasure.Services)
	if _, ok := s.sealer.(keyDestroyer); ok {
		pending = append([]string{erasure.ServiceKeyring}, pending...)
	}
	return pending
}
