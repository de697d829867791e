package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/pagination"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// An invitation token reads "inv_<prefix><secret>": the 12-character prefix finds
// the tenant and the row without a tenant context (invitation_token_prefixes), the
// whole token is checked against a keyed hash.
const (
	invTokenPrefix     = "inv_"
	invPrefixLen       = 12
	invSecretLen       = 32
	defaultInviteTTL   = 7 * 24 * time.Hour
	resendQuietPeriod  = time.Minute
	defaultAcceptURL   = "http://localhost:8080/accept-invitation?token={token}"
	acceptURLTokenSlot = "{token}"
)

// inviteConfig is what invitations need besides the store.
type inviteConfig struct {
	mailer Mailer
	// acceptURL is the link in the email, with {token} where the token goes.
	acceptURL string
	ttl       time.Duration
	passwords passwordChecker
}

func newInvitationToken() (token, prefix string, err error) {
	r, err := randomString(base62, invPrefixLen+invSecretLen)
	if err != nil {
		return "", "", err
	}
	return invTokenPrefix + r, r[:invPrefixLen], nil
}

func parseInvitationToken(tok string) (prefix string, ok bool) {
	r, found := strings.CutPrefix(tok, invTokenPrefix)
	if !found || len(r) != invPrefixLen+invSecretLen {
		return "", false
	}
	for _, c := range r {
		if !strings.ContainsRune(base62, c) {
			return "", false
		}
	}
	return r[:invPrefixLen], true
}

func (s *Service) invitationHash(tok string) []byte {
	m := hmac.New(sha256.New, s.pepper)
	m.Write([]byte("invitation\x00"))
	m.Write([]byte(tok))
	return m.Sum(nil)
}

func invitationState(r sqlc.IdentityInvitation, now time.Time) identityv1.InvitationState {
	switch {
	case r.AcceptTime != nil:
		return identityv1.InvitationState_INVITATION_STATE_ACCEPTED
	case r.RevokeTime != nil:
		return identityv1.InvitationState_INVITATION_STATE_REVOKED
	case !r.ExpireTime.After(now):
		return identityv1.InvitationState_INVITATION_STATE_EXPIRED
	}
	return identityv1.InvitationState_INVITATION_STATE_PENDING
}

var invitationStateNames = map[identityv1.InvitationState]string{
	identityv1.InvitationState_INVITATION_STATE_PENDING:  "pending",
	identityv1.InvitationState_INVITATION_STATE_ACCEPTED: "accepted",
	identityv1.InvitationState_INVITATION_STATE_REVOKED:  "revoked",
	identityv1.InvitationState_INVITATION_STATE_EXPIRED:  "expired",
}

func invitationToProto(r sqlc.IdentityInvitation) (*identityv1.Invitation, error) {
	claims := &structpb.Struct{}
	if err := protojson.Unmarshal(r.Claims, claims); err != nil {
		return nil, apierr.Internal(fmt.Errorf("decode claims of invitation %s: %w", r.ID, err))
	}
	out := &identityv1.Invitation{
		Id: r.ID.String(), TenantId: r.TenantID.String(), Email: r.Email, Role: r.Role, Claims: claims,
		Message: r.Message, State: invitationState(r, time.Now()), SendCount: r.SendCount,
		CreateTime: timestamppb.New(r.CreateTime), ExpireTime: timestamppb.New(r.ExpireTime),
	}
	if r.InviterIdentityID != nil {
		out.InviterIdentityId = r.InviterIdentityID.String()
	}
	if r.AcceptedIdentityID != nil {
		out.AcceptedIdentityId = r.AcceptedIdentityID.String()
	}
	if r.AcceptTime != nil {
		out.AcceptTime = timestamppb.New(*r.AcceptTime)
	}
	if r.RevokeTime != nil {
		out.RevokeTime = timestamppb.New(*r.RevokeTime)
	}
	if r.LastSendTime != nil {
		out.LastSendTime = timestamppb.New(*r.LastSendTime)
	}
	return out, nil
}

// invitationServer implements InvitationService.
type invitationServer struct {
	identityv1.UnimplementedInvitationServiceServer
	svc *Service
}

func (s *Service) inviteTTL(hours int32) time.Duration {
	if hours > 0 {
		return time.Duration(hours) * time.Hour
	}
	if s.invites.ttl > 0 {
		return s.invites.ttl
	}
	return defaultInviteTTL
}

// emailable reports whether an email can go out; callers asked to send one get a
// clear error up front rather than an invitation nobody receives.
func (s *Service) emailable(skip bool) error {
	if !skip && s.invites.mailer == nil {
		return apierr.FailedPrecondition("no mail server is configured; set skip_email and deliver the token yourself")
	}
	return nil
}

func (s *invitationServer) CreateInvitation(ctx context.Context, req *identityv1.CreateInvitationRequest) (*identityv1.CreateInvitationResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	role := req.GetRole()
	if role == "" {
		role = auth.RoleUser
	}
	if err := checkGrant(p, role); err != nil {
		return nil, err
	}
	if err := s.svc.emailable(req.GetSkipEmail()); err != nil {
		return nil, err
	}
	claims, err := claimsJSON(req.GetClaims())
	if err != nil {
		return nil, apierr.Field("claims", "cannot be stored: %v", err)
	}
	var inviter *uuid.UUID
	if id, err := uuid.Parse(p.IdentityID); err == nil {
		inviter = &id
	}
	email := strings.TrimSpace(req.GetEmail())
	var token string
	var row sqlc.IdentityInvitation
	var resp *identityv1.CreateInvitationResponse
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		resp, err = idempotent(ctx, tx, tenant, "CreateInvitation", req.GetIdempotencyKey(), req, &identityv1.CreateInvitationResponse{},
			func() (*identityv1.CreateInvitationResponse, error) {
				existing, err := tx.ListIdentities(ctx, sqlc.ListIdentitiesParams{ExternalID: &email, PageLimit: 1})
				if err != nil {
					return nil, err
				}
				if len(existing) > 0 {
					return nil, apierr.AlreadyExists("an identity with external_id %q exists", email)
				}
				pending, err := tx.PendingInvitationExists(ctx, email)
				if err != nil {
					return nil, err
				}
				if pending {
					return nil, apierr.AlreadyExists("a pending invitation for %q exists; resend it", email)
				}
				tok, prefix, err := newInvitationToken()
				if err != nil {
					return nil, apierr.Internal(err)
				}
				if err := tx.CreateInvitationTokenPrefix(ctx, sqlc.CreateInvitationTokenPrefixParams{Prefix: prefix, TenantID: tenant}); err != nil {
					return nil, store.MapErr(err)
				}
				row, err = tx.CreateInvitation(ctx, sqlc.CreateInvitationParams{
					ID: newID(), TenantID: tenant, Email: email, Role: role, Claims: claims, Message: req.GetMessage(),
					InviterIdentityID: inviter, TokenPrefix: prefix, TokenHash: s.svc.invitationHash(tok),
					ExpireTime: time.Now().Add(s.svc.inviteTTL(req.GetExpiresInHours())),
				})
				if err != nil {
					return nil, store.MapErr(err)
				}
				inv, err := invitationToProto(row)
				if err != nil {
					return nil, err
				}
				if err := s.svc.emit(ctx, tx, tenant, "invitation.created", inv.GetId(), inv); err != nil {
					return nil, err
				}
				token = tok
				return &identityv1.CreateInvitationResponse{Invitation: inv}, nil
			})
		return err
	})
	if err != nil {
		return nil, err
	}
	if token == "" {
		return resp, nil // an idempotent replay: the token was shown once already
	}
	resp.Token = token
	if !req.GetSkipEmail() {
		if inv := s.svc.sendInvitation(ctx, tenant, p, row, token); inv != nil {
			resp.Invitation = inv
		}
	}
	return resp, nil
}

// sendInvitation emails the invitation after its transaction committed and records
// the send. A failed delivery is logged (without the token) and leaves send_count
// as it was, so the caller sees it in the response and can resend.
func (s *Service) sendInvitation(ctx context.Context, tenant uuid.UUID, p *auth.Principal, row sqlc.IdentityInvitation, token string) *identityv1.Invitation {
	tn, err := s.store.Global().GetTenant(ctx, tenant)
	if err != nil {
		s.logger.ErrorContext(ctx, "invitation email not sent", "invitation_id", row.ID, "err", err)
		return nil
	}
	if err := s.invites.mailer.Send(ctx, invitationMail(s.acceptLink(token), tn.Name, p.ExternalID, row)); err != nil {
		s.logger.ErrorContext(ctx, "invitation email not sent", "invitation_id", row.ID, "err", err)
		return nil
	}
	var inv *identityv1.Invitation
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		sent, err := tx.MarkInvitationSent(ctx, row.ID)
		if err != nil {
			return err
		}
		inv, err = invitationToProto(sent)
		if err != nil {
			return err
		}
		return s.emit(ctx, tx, tenant, "invitation.sent", inv.GetId(), inv)
	})
	if err != nil {
		s.logger.ErrorContext(ctx, "record invitation send", "invitation_id", row.ID, "err", err)
		return nil
	}
	return inv
}

func (s *Service) acceptLink(token string) string {
	tmpl := s.invites.acceptURL
	if tmpl == "" {
		tmpl = defaultAcceptURL
	}
	if !strings.Contains(tmpl, acceptURLTokenSlot) {
		sep := "?"
		if strings.Contains(tmpl, "?") {
			sep = "&"
		}
		tmpl += sep + "token=" + acceptURLTokenSlot
	}
	return strings.ReplaceAll(tmpl, acceptURLTokenSlot, url.QueryEscape(token))
}

func invitationMail(link, tenantName, inviter string, r sqlc.IdentityInvitation) Mail {
	var b strings.Builder
	fmt.Fprintf(&b, "Hello,\n\n%s has invited you to join %s", inviter, tenantName)
	fmt.Fprintf(&b, " as %s.\n\n", r.Role)
	if r.Message != "" {
		fmt.Fprintf(&b, "Their message:\n\n%s\n\n", r.Message)
	}
	fmt.Fprintf(&b, "Accept the invitation here:\n\n%s\n\n", link)
	fmt.Fprintf(&b, "The link works once and expires on %s.\n", r.ExpireTime.UTC().Format("2 January 2006 15:04 MST"))
	b.WriteString("If you did not expect this email, you can ignore it.\n")
	return Mail{To: r.Email, Subject: "You are invited to join " + tenantName, Text: b.String()}
}

func (s *invitationServer) ListInvitations(ctx context.Context, req *identityv1.ListInvitationsRequest) (*identityv1.ListInvitationsResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	params := sqlc.ListInvitationsParams{PageLimit: pagination.Size(req.GetPageSize()) + 1, Email: optional(req.GetEmail())}
	if st := invitationStateNames[req.GetState()]; st != "" {
		params.State = &st
	}
	fp := pagination.Fingerprint("invitations", params.Email, params.State)
	cursor, err := pagination.DecodeUUID(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	params.BeforeID = cursor
	var rows []sqlc.IdentityInvitation
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListInvitations(ctx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &identityv1.ListInvitationsResponse{Invitations: []*identityv1.Invitation{}}
	if len(rows) == int(params.PageLimit) {
		rows = rows[:len(rows)-1]
		resp.NextPageToken = pagination.Encode(rows[len(rows)-1].ID.String(), fp)
	}
	for _, r := range rows {
		inv, err := invitationToProto(r)
		if err != nil {
			return nil, err
		}
		resp.Invitations = append(resp.Invitations, inv)
	}
	return resp, nil
}

func loadInvitation(ctx context.Context, tx *store.Tx, rawID string, forUpdate bool) (sqlc.IdentityInvitation, error) {
	id, err := parseID("id", rawID)
	if err != nil {
		return sqlc.IdentityInvitation{}, err
	}
	var row sqlc.IdentityInvitation
	if forUpdate {
		row, err = tx.GetInvitationForUpdate(ctx, id)
	} else {
		row, err = tx.GetInvitation(ctx, id)
	}
	if err := store.MapErr(err); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return row, apierr.NotFound("invitation", rawID)
		}
		return row, err
	}
	return row, nil
}

func (s *invitationServer) GetInvitation(ctx context.Context, req *identityv1.GetInvitationRequest) (*identityv1.GetInvitationResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var row sqlc.IdentityInvitation
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = loadInvitation(ctx, tx, req.GetId(), false)
		return err
	})
	if err != nil {
		return nil, err
	}
	inv, err := invitationToProto(row)
	if err != nil {
		return nil, err
	}
	return &identityv1.GetInvitationResponse{Invitation: inv}, nil
}

func (s *invitationServer) RevokeInvitation(ctx context.Context, req *identityv1.RevokeInvitationRequest) (*identityv1.RevokeInvitationResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var inv *identityv1.Invitation
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err := loadInvitation(ctx, tx, req.GetId(), true)
		if err != nil {
			return err
		}
		switch {
		case row.AcceptTime != nil:
			return apierr.FailedPrecondition("the invitation was accepted")
		case row.RevokeTime == nil:
			if row, err = tx.RevokeInvitation(ctx, row.ID); err != nil {
				return err
			}
			if inv, err = invitationToProto(row); err != nil {
				return err
			}
			return s.svc.emit(ctx, tx, tenant, "invitation.revoked", inv.GetId(), inv)
		}
		inv, err = invitationToProto(row)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &identityv1.RevokeInvitationResponse{Invitation: inv}, nil
}

func (s *invitationServer) ResendInvitation(ctx context.Context, req *identityv1.ResendInvitationRequest) (*identityv1.ResendInvitationResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.svc.emailable(req.GetSkipEmail()); err != nil {
		return nil, err
	}
	var token string
	var row sqlc.IdentityInvitation
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		cur, err := loadInvitation(ctx, tx, req.GetId(), true)
		if err != nil {
			return err
		}
		switch {
		case cur.AcceptTime != nil:
			return apierr.FailedPrecondition("the invitation was accepted")
		case cur.RevokeTime != nil:
			return apierr.FailedPrecondition("the invitation was revoked")
		case cur.LastSendTime != nil && time.Since(*cur.LastSendTime) < resendQuietPeriod:
			// A double click or a retry: nothing changes, no second email.
			row = cur
			return nil
		}
		tok, prefix, err := newInvitationToken()
		if err != nil {
			return apierr.Internal(err)
		}
		if err := tx.DeleteInvitationTokenPrefix(ctx, cur.TokenPrefix); err != nil {
			return err
		}
		if err := tx.CreateInvitationTokenPrefix(ctx, sqlc.CreateInvitationTokenPrefixParams{Prefix: prefix, TenantID: tenant}); err != nil {
			return store.MapErr(err)
		}
		row, err = tx.ReissueInvitationToken(ctx, sqlc.ReissueInvitationTokenParams{
			ID: cur.ID, TokenPrefix: prefix, TokenHash: s.svc.invitationHash(tok),
			ExpireTime: time.Now().Add(s.svc.inviteTTL(req.GetExpiresInHours())),
		})
		if err != nil {
			return err
		}
		inv, err := invitationToProto(row)
		if err != nil {
			return err
		}
		token = tok
		return s.svc.emit(ctx, tx, tenant, "invitation.resent", inv.GetId(), inv)
	})
	if err != nil {
		return nil, err
	}
	inv, err := invitationToProto(row)
	if err != nil {
		return nil, err
	}
	if token != "" && !req.GetSkipEmail() {
		if sent := s.svc.sendInvitation(ctx, tenant, p, row, token); sent != nil {
			inv = sent
		}
	}
	return &identityv1.ResendInvitationResponse{Invitation: inv, Token: token}, nil
}

// invitationByToken finds the invitation a token belongs to, from the token alone,
// and runs fn in its tenant's transaction with the row locked. Unknown and wrong
// tokens are NOT_FOUND alike.
func (s *Service) invitationByToken(ctx context.Context, token string, fn func(tx *store.Tx, tenant uuid.UUID, row sqlc.IdentityInvitation) error) error {
	notFound := apierr.NotFound("invitation", "(token)")
	prefix, ok := parseInvitationToken(token)
	hash := s.invitationHash(token)
	if !ok {
		return notFound
	}
	tenant, err := s.store.Global().TenantOfInvitationPrefix(ctx, prefix)
	if err != nil {
		if errors.Is(store.MapErr(err), store.ErrNotFound) {
			hmac.Equal(hash, make([]byte, sha256.Size))
			return notFound
		}
		return apierr.Internal(fmt.Errorf("look up invitation prefix: %w", err))
	}
	return s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err := tx.GetInvitationByPrefixForUpdate(ctx, prefix)
		if err != nil {
			if errors.Is(store.MapErr(err), store.ErrNotFound) {
				return notFound
			}
			return err
		}
		if !hmac.Equal(hash, row.TokenHash) {
			return notFound
		}
		return fn(tx, tenant, row)
	})
}

func usable(row sqlc.IdentityInvitation) error {
	switch invitationState(row, time.Now()) {
	case identityv1.InvitationState_INVITATION_STATE_ACCEPTED:
		return apierr.FailedPrecondition("the invitation was already accepted")
	case identityv1.InvitationState_INVITATION_STATE_REVOKED:
		return apierr.FailedPrecondition("the invitation was revoked")
	case identityv1.InvitationState_INVITATION_STATE_EXPIRED:
		return apierr.FailedPrecondition("the invitation has expired")
	}
	return nil
}

func (s *invitationServer) ValidateInvitation(ctx context.Context, req *identityv1.ValidateInvitationRequest) (*identityv1.ValidateInvitationResponse, error) {
	var resp *identityv1.ValidateInvitationResponse
	err := s.svc.invitationByToken(ctx, req.GetToken(), func(tx *store.Tx, tenant uuid.UUID, row sqlc.IdentityInvitation) error {
		if err := usable(row); err != nil {
			return err
		}
		inv, err := invitationToProto(row)
		if err != nil {
			return err
		}
		tn, err := s.svc.store.Global().GetTenant(ctx, tenant)
		if err != nil {
			return err
		}
		resp = &identityv1.ValidateInvitationResponse{Invitation: inv, TenantSlug: tn.Slug, TenantName: tn.Name, SsoProviders: s.svc.ssoProviderNames(ctx, tx)}
		if row.InviterIdentityID != nil {
			if ident, err := tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: *row.InviterIdentityID, IncludeDeleted: true}); err == nil {
				resp.InviterExternalId = ident.ExternalID
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *invitationServer) AcceptInvitation(ctx context.Context, req *identityv1.AcceptInvitationRequest) (*identityv1.AcceptInvitationResponse, error) {
	resp := &identityv1.AcceptInvitationResponse{}
	var after func()
	err := s.svc.invitationByToken(ctx, req.GetToken(), func(tx *store.Tx, tenant uuid.UUID, row sqlc.IdentityInvitation) error {
		if err := usable(row); err != nil {
			return err
		}
		settings, err := s.svc.tenantSettings(ctx, tenant)
		if err != nil {
			return err
		}
		if err := checkPasswordPolicy("password", req.GetPassword(), int(settings.GetPasswordMinLength())); err != nil {
			return err
		}
		external := strings.TrimSpace(req.GetExternalId())
		if external == "" {
			external = row.Email
		}
		if s.svc.invites.passwords == nil {
			return apierr.FailedPrecondition("passwords are not available on this server")
		}
		hash, err := s.svc.invites.passwords.hashPassword(ctx, req.GetPassword())
		if err != nil {
			return err
		}
		names, err := sensitiveNamesOf(ctx, tx, tenant)
		if err != nil {
			return err
		}
		claims, sensitive, err := splitClaims(row.Claims, names)
		if err != nil {
			return err
		}
		ident, err := tx.CreateIdentity(ctx, sqlc.CreateIdentityParams{
			ID: newID(), TenantID: tenant, ExternalID: external, Kind: "user", Role: row.Role,
			Roles: []string{}, Claims: claims, PasswordHash: &hash,
		})
		if err := store.MapErr(err); err != nil {
			if errors.Is(err, store.ErrAlreadyExists) {
				return apierr.AlreadyExists("an identity with external_id %q exists", external)
			}
			return err
		}
		if err := s.svc.writeSensitiveClaims(ctx, tx, tenant, ident.ID, sensitive, true); err != nil {
			return err
		}
		if resp.Identity, err = identityToProto(ident); err != nil {
			return err
		}
		if err := s.svc.emit(ctx, tx, tenant, "identity.created", ident.ID.String(), s.svc.redactedForEvent(ctx, tx, resp.GetIdentity())); err != nil {
			return err
		}
		if err := s.svc.fillSensitiveClaims(ctx, tx, resp.GetIdentity()); err != nil {
			return err
		}
		accepted, err := tx.AcceptInvitation(ctx, sqlc.AcceptInvitationParams{ID: row.ID, AcceptedIdentityID: &ident.ID})
		if err != nil {
			return err
		}
		if resp.Invitation, err = invitationToProto(accepted); err != nil {
			return err
		}
		if err := s.svc.emit(ctx, tx, tenant, "invitation.accepted", accepted.ID.String(), resp.GetInvitation()); err != nil {
			return err
		}
		resp.Tokens, after, err = s.svc.signInInvited(ctx, tx, ident, req.GetUserAgent(), req.GetDeviceName())
		return err
	})
	if err != nil {
		return nil, err
	}
	if after != nil {
		after()
	}
	return resp, nil
}
