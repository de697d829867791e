package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/pagination"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// Revoke reasons as stored, and how they appear in the API.
const (
	revokeLogout         = "logout"
	revokeRevoked        = "revoked"
	revokeReuse          = "refresh_token_reuse"
	revokeLimit          = "session_limit"
	revokePasswordChange = "password_change"
)

var revokeReasons = map[string]identityv1.SessionRevokeReason{
	revokeLogout:         identityv1.SessionRevokeReason_SESSION_REVOKE_REASON_LOGOUT,
	revokeRevoked:        identityv1.SessionRevokeReason_SESSION_REVOKE_REASON_REVOKED,
	revokeReuse:          identityv1.SessionRevokeReason_SESSION_REVOKE_REASON_REFRESH_TOKEN_REUSE,
	revokeLimit:          identityv1.SessionRevokeReason_SESSION_REVOKE_REASON_SESSION_LIMIT,
	revokePasswordChange: identityv1.SessionRevokeReason_SESSION_REVOKE_REASON_PASSWORD_CHANGE,
	"identity_inactive":  identityv1.SessionRevokeReason_SESSION_REVOKE_REASON_IDENTITY_INACTIVE,
}

// Auth methods as stored.
const (
	methodPassword    = "password"
	methodPasswordMFA = "password_mfa"
	methodIssued      = "issued"
	methodInvitation  = "invitation"
)

var authMethods = map[string]identityv1.SessionAuthMethod{
	methodPassword:    identityv1.SessionAuthMethod_SESSION_AUTH_METHOD_PASSWORD,
	methodPasswordMFA: identityv1.SessionAuthMethod_SESSION_AUTH_METHOD_PASSWORD_MFA,
	"sso":             identityv1.SessionAuthMethod_SESSION_AUTH_METHOD_SSO,
	methodInvitation:  identityv1.SessionAuthMethod_SESSION_AUTH_METHOD_INVITATION,
	methodIssued:      identityv1.SessionAuthMethod_SESSION_AUTH_METHOD_ISSUED,
}

func sessionToProto(r sqlc.IdentitySession, current string) *identityv1.Session {
	out := &identityv1.Session{
		Id: r.ID.String(), TenantId: r.TenantID.String(), IdentityId: r.IdentityID.String(),
		UserAgent: r.UserAgent, ClientIp: r.ClientIp, DeviceName: r.DeviceName,
		AuthMethod: authMethods[r.AuthMethod], CreateTime: timestamppb.New(r.CreateTime),
		LastSeenTime: timestamppb.New(r.LastSeenTime), ExpireTime: timestamppb.New(r.ExpireTime),
		RevokeReason: revokeReasons[r.RevokeReason], Current: current != "" && r.ID.String() == current,
	}
	if r.RevokeTime != nil {
		out.RevokeTime = timestamppb.New(*r.RevokeTime)
	}
	return out
}

// client is what a request says about the device it comes from.
type client struct {
	ip, userAgent string
}

// clientOf reads the client address and user agent the way the audit log does
// (audit.ClientOf), so a session and its audit entries name the same device.
func clientOf(ctx context.Context) client {
	c := audit.ClientOf(ctx)
	return client{ip: c.IP, userAgent: c.UserAgent}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// tenantSettings loads the tenant's settings outside any transaction.
func (s *Service) tenantSettings(ctx context.Context, tenant uuid.UUID) (*identityv1.TenantSettings, error) {
	return settingsOf(ctx, s.store.Global(), tenant)
}

// settingsOf loads the tenant's settings through q: inside a transaction, pass
// the transaction, so a request never holds one pooled connection while waiting
// for another (a flood of sign-ins would deadlock the pool).
func settingsOf(ctx context.Context, q interface {
	GetTenant(context.Context, uuid.UUID) (sqlc.IdentityTenant, error)
}, tenant uuid.UUID) (*identityv1.TenantSettings, error) {
	row, err := q.GetTenant(ctx, tenant)
	if err != nil {
		return nil, fmt.Errorf("load tenant %s: %w", tenant, store.MapErr(err))
	}
	settings := &identityv1.TenantSettings{}
	if err := protojson.Unmarshal(row.Settings, settings); err != nil {
		return nil, fmt.Errorf("decode settings of tenant %s: %w", tenant, err)
	}
	return settings, nil
}

// openSession creates a session for ident in tx, revokes the oldest sessions past
// the tenant's cap, and returns its first tokens. The revoked sessions are returned
// for applyRevocations once tx commits.
//
// When the tenant requires MFA and a person signs in with a password (or by
// accepting an invitation) without having set it up, the session gets only an
// MFA-enrollment access token and no refresh token, and enrolling is true: the
// token can set up and verify MFA and nothing else, and the next sign-in asks for
// the second factor.
func (s *Service) openSession(ctx context.Context, tx *store.Tx, ident sqlc.IdentityIdentity, method, userAgent, deviceName string) (toks *identityv1.Tokens, over []sqlc.IdentitySession, enrolling bool, err error) {
	t := s.tokens
	c := clientOf(ctx)
	if userAgent == "" {
		userAgent = c.userAgent
	}
	sess, err := tx.CreateSession(ctx, sqlc.CreateSessionParams{
		ID: newID(), TenantID: ident.TenantID, IdentityID: ident.ID, AuthMethod: method,
		UserAgent: truncate(userAgent, 512), ClientIp: c.ip, DeviceName: truncate(deviceName, 200),
		ExpireTime: time.Now().Add(t.cfg.SessionTTL),
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("create session: %w", err)
	}
	settings, err := settingsOf(ctx, tx, ident.TenantID)
	if err != nil {
		return nil, nil, false, err
	}
	if settings.GetMfaRequired() && ident.Kind == auth.KindUser && (method == methodPassword || method == methodInvitation) {
		on, err := tx.TOTPEnabled(ctx, ident.ID)
		if err != nil {
			return nil, nil, false, fmt.Errorf("mfa state: %w", err)
		}
		enrolling = !on
	}
	limit := int(settings.GetMaxSessionsPerIdentity())
	if limit <= 0 {
		limit = t.cfg.DefaultMaxSessions
	}
	over, err = tx.RevokeSessionsOverCap(ctx, sqlc.RevokeSessionsOverCapParams{
		Reason: revokeLimit, IdentityID: ident.ID, Keep: int32(limit),
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("enforce session cap: %w", err)
	}
	if err := s.recordRevocations(ctx, tx, ident.TenantID, over); err != nil {
		return nil, nil, false, err
	}
	ev, err := event(ident.TenantID, "session.created", sess.ID.String(), sessionToProto(sess, ""))
	if err != nil {
		return nil, nil, false, err
	}
	if err := tx.Emit(ctx, ev); err != nil {
		return nil, nil, false, fmt.Errorf("emit session.created: %w", err)
	}
	// An enrollment session has no refresh token: its one access token is the
	// time allowed to set MFA up.
	refresh := ""
	if !enrolling {
		if refresh, _, err = t.newRefreshTokenRow(ctx, tx, ident.TenantID, sess.ID); err != nil {
			return nil, nil, false, err
		}
	}
	access, err := t.signAccessToken(ctx, ident, sess.ID, enrolling)
	if err != nil {
		return nil, nil, false, err
	}
	return t.tokensOf(access, refresh, sess.ID), over, enrolling, nil
}

// recordRevocations writes the session.revoked events and the revoked-session
// entries that verifiers load, in tx.
func (s *Service) recordRevocations(ctx context.Context, tx *store.Tx, tenant uuid.UUID, sessions []sqlc.IdentitySession) error {
	for _, sess := range sessions {
		until := time.Now().Add(auth.MaxAccessTokenTTL + time.Minute)
		if err := tx.AddRevokedSession(ctx, sqlc.AddRevokedSessionParams{SessionID: sess.ID, UntilTime: until}); err != nil {
			return fmt.Errorf("record revoked session: %w", err)
		}
		ev, err := event(tenant, auth.SessionRevokedEvent, sess.ID.String(), sessionToProto(sess, ""))
		if err != nil {
			return err
		}
		if err := tx.Emit(ctx, ev); err != nil {
			return fmt.Errorf("emit session.revoked: %w", err)
		}
	}
	return nil
}

// retiredGeneration is a raised token generation of an identity: its tokens of
// older generations are refused.
type retiredGeneration struct {
	identity uuid.UUID
	min      int64
}

// retireTokenGenerations raises the identity's token generation in tx, so every
// access token it holds now is refused, and records the floor for verifiers (the
// table they load at start, the identity.tokens_revoked event they follow). Its
// sessions are untouched: the next refresh issues a token of the new generation.
func (s *Service) retireTokenGenerations(ctx context.Context, tx *store.Tx, tenant, identity uuid.UUID) (retiredGeneration, error) {
	gen, err := tx.RaiseTokenGeneration(ctx, identity)
	if err != nil {
		return retiredGeneration{}, fmt.Errorf("raise token generation: %w", err)
	}
	now := time.Now()
	if err := tx.SetTokenGenerationFloor(ctx, sqlc.SetTokenGenerationFloorParams{
		IdentityID: identity, MinGeneration: gen, UntilTime: now.Add(auth.MaxAccessTokenTTL + time.Minute),
	}); err != nil {
		return retiredGeneration{}, fmt.Errorf("record token generation: %w", err)
	}
	raw, err := json.Marshal(auth.TokensRevoked(identity.String(), gen, now))
	if err != nil {
		return retiredGeneration{}, err
	}
	ev, err := bus.NewEvent(tenant.String(), auth.TokensRevokedEvent, EventSource, identity.String(), json.RawMessage(raw))
	if err != nil {
		return retiredGeneration{}, err
	}
	if err := tx.Emit(ctx, ev); err != nil {
		return retiredGeneration{}, fmt.Errorf("emit %s: %w", auth.TokensRevokedEvent, err)
	}
	return retiredGeneration{identity: identity, min: gen}, nil
}

// applyGenerations makes this process refuse the retired generations at once.
func (s *Service) applyGenerations(gens []retiredGeneration) {
	until := time.Now().Add(auth.MaxAccessTokenTTL + time.Minute)
	for _, g := range gens {
		s.tokens.revoked.RaiseGeneration(g.identity.String(), g.min, until)
	}
}

// applyRevocations makes this process refuse the sessions' tokens at once, without
// waiting for the event to come back from the bus.
func (s *Service) applyRevocations(sessions []sqlc.IdentitySession) {
	until := time.Now().Add(auth.MaxAccessTokenTTL + time.Minute)
	for _, sess := range sessions {
		s.tokens.revoked.Revoke(sess.ID.String(), until)
	}
}

// loadRevocations fills the revoked set from the database at start.
func (s *Service) loadRevocations(ctx context.Context) error {
	rows, err := s.store.Global().ListRevokedSessions(ctx)
	if err != nil {
		return fmt.Errorf("load revoked sessions: %w", err)
	}
	for _, r := range rows {
		s.tokens.revoked.Revoke(r.SessionID.String(), r.UntilTime)
	}
	floors, err := s.store.Global().ListTokenGenerationFloors(ctx)
	if err != nil {
		return fmt.Errorf("load token generation floors: %w", err)
	}
	for _, f := range floors {
		s.tokens.revoked.RaiseGeneration(f.IdentityID.String(), f.MinGeneration, f.UntilTime)
	}
	return nil
}

// revokeIdentitySessions revokes every live session of an identity (but except,
// when set) in tx.
func (s *Service) revokeIdentitySessions(ctx context.Context, tx *store.Tx, tenant, identity uuid.UUID, except *uuid.UUID, reason string) ([]sqlc.IdentitySession, error) {
	rows, err := tx.RevokeIdentitySessions(ctx, sqlc.RevokeIdentitySessionsParams{Reason: reason, IdentityID: identity, ExceptID: except})
	if err != nil {
		return nil, fmt.Errorf("revoke sessions: %w", err)
	}
	return rows, s.recordRevocations(ctx, tx, tenant, rows)
}

// sessionServer implements SessionService.
type sessionServer struct {
	identityv1.UnimplementedSessionServiceServer
	svc *Service
}

func isAdmin(p *auth.Principal) bool { return p.HasRole(auth.RoleAdmin) || p.IsOperator() }

func (s *sessionServer) ListSessions(ctx context.Context, req *identityv1.ListSessionsRequest) (*identityv1.ListSessionsResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	params := sqlc.ListSessionsParams{PageLimit: pagination.Size(req.GetPageSize()) + 1, IncludeRevoked: req.GetIncludeRevoked()}
	switch {
	case req.GetAllIdentities():
		if !isAdmin(p) {
			return nil, apierr.PermissionDenied("only tenant admins list every identity's sessions")
		}
	case req.GetIdentityId() != "" && req.GetIdentityId() != p.IdentityID:
		if !isAdmin(p) {
			return nil, apierr.PermissionDenied("only tenant admins list other identities' sessions")
		}
		id, err := parseID("identity_id", req.GetIdentityId())
		if err != nil {
			return nil, err
		}
		params.IdentityID = &id
	default:
		id, err := parseID("identity_id", p.IdentityID)
		if err != nil {
			return nil, err
		}
		params.IdentityID = &id
	}
	fp := pagination.Fingerprint("sessions", params.IdentityID, params.IncludeRevoked)
	cursor, err := pagination.DecodeUUID(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	params.BeforeID = cursor
	var rows []sqlc.IdentitySession
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListSessions(ctx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &identityv1.ListSessionsResponse{}
	if len(rows) == int(params.PageLimit) {
		rows = rows[:len(rows)-1]
		resp.NextPageToken = pagination.Encode(rows[len(rows)-1].ID.String(), fp)
	}
	for _, r := range rows {
		resp.Sessions = append(resp.Sessions, sessionToProto(r, p.SessionID))
	}
	return resp, nil
}

// ownSession loads a session the caller may see: their own, or any of the tenant
// for admins. Others are NOT_FOUND, like sessions of other tenants.
func (s *Service) ownSession(ctx context.Context, tx *store.Tx, p *auth.Principal, rawID string) (sqlc.IdentitySession, error) {
	id, err := parseID("id", rawID)
	if err != nil {
		return sqlc.IdentitySession{}, err
	}
	row, err := tx.GetSession(ctx, id)
	if err != nil || (row.IdentityID.String() != p.IdentityID && !isAdmin(p)) {
		if err == nil || errors.Is(store.MapErr(err), store.ErrNotFound) {
			return sqlc.IdentitySession{}, apierr.NotFound("session", rawID)
		}
		return sqlc.IdentitySession{}, err
	}
	return row, nil
}

func (s *sessionServer) GetSession(ctx context.Context, req *identityv1.GetSessionRequest) (*identityv1.GetSessionResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var row sqlc.IdentitySession
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = s.svc.ownSession(ctx, tx, p, req.GetId())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &identityv1.GetSessionResponse{Session: sessionToProto(row, p.SessionID)}, nil
}

func (s *sessionServer) RevokeSession(ctx context.Context, req *identityv1.RevokeSessionRequest) (*identityv1.RevokeSessionResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var row sqlc.IdentitySession
	var revoked []sqlc.IdentitySession
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = s.svc.ownSession(ctx, tx, p, req.GetId())
		if err != nil || row.RevokeTime != nil {
			return err
		}
		reason := revokeRevoked
		if row.ID.String() == p.SessionID {
			reason = revokeLogout
		}
		row, err = tx.RevokeSession(ctx, sqlc.RevokeSessionParams{ID: row.ID, RevokeReason: reason})
		if err != nil {
			return err
		}
		revoked = []sqlc.IdentitySession{row}
		return s.svc.recordRevocations(ctx, tx, tenant, revoked)
	})
	if err != nil {
		return nil, err
	}
	s.svc.applyRevocations(revoked)
	return &identityv1.RevokeSessionResponse{Session: sessionToProto(row, p.SessionID)}, nil
}

func (s *sessionServer) RevokeOtherSessions(ctx context.Context, _ *identityv1.RevokeOtherSessionsRequest) (*identityv1.RevokeOtherSessionsResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	identity, err := parseID("identity_id", p.IdentityID)
	if err != nil {
		return nil, err
	}
	var except *uuid.UUID
	if sid, err := uuid.Parse(p.SessionID); err == nil {
		except = &sid
	}
	var revoked []sqlc.IdentitySession
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		revoked, err = s.svc.revokeIdentitySessions(ctx, tx, tenant, identity, except, revokeRevoked)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.svc.applyRevocations(revoked)
	return &identityv1.RevokeOtherSessionsResponse{RevokedCount: int32(len(revoked))}, nil
}

func (s *sessionServer) RefreshSession(ctx context.Context, req *identityv1.RefreshSessionRequest) (*identityv1.RefreshSessionResponse, error) {
	toks, err := s.svc.refresh(ctx, req.GetRefreshToken())
	if err != nil {
		return nil, err
	}
	return &identityv1.RefreshSessionResponse{Tokens: toks}, nil
}

func (s *sessionServer) CleanupSessions(ctx context.Context, req *identityv1.CleanupSessionsRequest) (*identityv1.CleanupSessionsResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	n, err := s.svc.cleanupTenant(ctx, tenant, req.GetDryRun())
	if err != nil {
		return nil, err
	}
	return &identityv1.CleanupSessionsResponse{RemovedCount: n}, nil
}

// cleanupTenant deletes the tenant's sessions that expired or were revoked longer
// than the retention ago.
func (s *Service) cleanupTenant(ctx context.Context, tenant uuid.UUID, dryRun bool) (int64, error) {
	cutoff := time.Now().Add(-s.tokens.cfg.SessionRetention)
	var res sqlc.DeleteDeadSessionsRow
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		var err error
		res, err = tx.DeleteDeadSessions(ctx, sqlc.DeleteDeadSessionsParams{Cutoff: cutoff, DryRun: dryRun})
		return err
	})
	if err != nil {
		return 0, err
	}
	if dryRun {
		return res.Matching, nil
	}
	return res.Deleted, nil
}

// sweep is the scheduled cleanup: dead sessions of every tenant, revoked-session
// entries past their tokens' lifetime, sealed refresh successors past the grace
// window, and a signing-key rotation when one is due.
func (s *Service) sweep(ctx context.Context) error {
	if err := s.tokens.keys.ensure(ctx, false); err != nil {
		s.logger.ErrorContext(ctx, "signing key rotation failed", "err", err)
	}
	g := s.store.Global()
	if err := g.DeleteOldRevokedSessions(ctx); err != nil {
		return fmt.Errorf("sweep revoked sessions: %w", err)
	}
	if err := g.DeleteOldTokenGenerationFloors(ctx); err != nil {
		return fmt.Errorf("sweep token generation floors: %w", err)
	}
	var after *uuid.UUID
	for {
		tenants, err := g.ListTenants(ctx, sqlc.ListTenantsParams{AfterID: after, PageLimit: 500})
		if err != nil {
			return fmt.Errorf("sweep: list tenants: %w", err)
		}
		for _, t := range tenants {
			if _, err := s.cleanupTenant(ctx, t.ID, false); err != nil {
				return fmt.Errorf("sweep sessions of tenant %s: %w", t.ID, err)
			}
			before := time.Now().Add(-s.tokens.cfg.RefreshGrace)
			if err := s.store.InTenant(ctx, t.ID, func(tx *store.Tx) error {
				return tx.ForgetRefreshSuccessors(ctx, before)
			}); err != nil {
				return fmt.Errorf("sweep refresh successors of tenant %s: %w", t.ID, err)
			}
		}
		if len(tenants) < 500 {
			return nil
		}
		after = &tenants[len(tenants)-1].ID
	}
}

// runSweeper sweeps every interval until ctx ends.
func (s *Service) runSweeper(ctx context.Context, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
				s.logger.ErrorContext(ctx, "session sweep failed", "err", err)
			}
		}
	}
}

// issuedTokens are tokens opened in a transaction, with the sessions the cap
// revoked, to be applied once it commits.
type issuedTokens struct {
	tokens  *identityv1.Tokens
	revoked []sqlc.IdentitySession
}

// issueTokens opens an "issued" session for an identity in tx: how CreateIdentity
// with issue_token hands a new agent its credentials.
func (s *Service) issueTokens(ctx context.Context, tx *store.Tx, identityID string) (*issuedTokens, error) {
	id, err := parseID("identity_id", identityID)
	if err != nil {
		return nil, err
	}
	ident, err := tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: id})
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", id, store.MapErr(err))
	}
	toks, over, _, err := s.openSession(ctx, tx, ident, methodIssued, "", "")
	if err != nil {
		return nil, err
	}
	return &issuedTokens{tokens: toks, revoked: over}, nil
}

// finishIssue applies what issueTokens revoked, after commit.
func (s *Service) finishIssue(it *issuedTokens) *identityv1.Tokens {
	s.applyRevocations(it.revoked)
	return it.tokens
}
