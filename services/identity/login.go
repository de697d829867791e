package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/kv"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// authServer implements AuthService. The MFA enrolment methods (SetupMfa,
// VerifyMfa, DisableMfa) live with the MFA code.
type authServer struct {
	identityv1.UnimplementedAuthServiceServer
	svc *Service
}

// errLoginFailed is the one answer to every failed sign-in: unknown tenant, unknown
// identifier, no password, wrong password, inactive identity.
func errLoginFailed() error {
	return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_LOGIN_FAILED, "invalid identifier or password")
}

// mfaChallengeTTL is how long a sign-in waits for its second factor.
const mfaChallengeTTL = 5 * time.Minute

type mfaChallenge struct {
	Tenant     uuid.UUID `json:"tenant"`
	Identity   uuid.UUID `json:"identity"`
	ExternalID string    `json:"external_id"`
	UserAgent  string    `json:"user_agent"`
	DeviceName string    `json:"device_name"`
}

func (a *authServer) Login(ctx context.Context, req *identityv1.LoginRequest) (*identityv1.LoginResponse, error) {
	return a.svc.login(ctx, req)
}

// loginTenant finds a tenant by id or slug.
func (s *Service) loginTenant(ctx context.Context, ref string) (uuid.UUID, bool, error) {
	g := s.store.Global()
	if id, err := uuid.Parse(ref); err == nil {
		row, err := g.GetTenant(ctx, id)
		if err == nil {
			return row.ID, true, nil
		}
		if !errors.Is(store.MapErr(err), store.ErrNotFound) {
			return uuid.Nil, false, err
		}
	}
	row, err := g.GetTenantBySlug(ctx, ref)
	if err != nil {
		if errors.Is(store.MapErr(err), store.ErrNotFound) {
			return uuid.Nil, false, nil
		}
		return uuid.Nil, false, err
	}
	return row.ID, true, nil
}

func (s *Service) login(ctx context.Context, req *identityv1.LoginRequest) (*identityv1.LoginResponse, error) {
	t := s.tokens
	c := clientOf(ctx)
	tenant, tenantFound, err := s.loginTenant(ctx, req.GetTenant())
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("resolve tenant: %w", err))
	}
	acctKey, ipKey := lockKeys(tenant, req.GetIdentifier(), c.ip)
	if err := t.checkLock(ctx, acctKey, ipKey); err != nil {
		s.recordAuth(ctx, authAudit{action: "auth.login", tenant: tenant, externalID: req.GetIdentifier(), err: err, reason: "locked"})
		return nil, err
	}
	var ident sqlc.IdentityIdentity
	hash := dummyHash()
	found := tenantFound
	if found {
		err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			var err error
			ident, err = tx.LoginIdentity(ctx, req.GetIdentifier())
			return err
		})
		switch {
		case err == nil:
			if ident.PasswordHash != nil && *ident.PasswordHash != "" {
				hash = *ident.PasswordHash
			}
		case errors.Is(err, store.ErrNotFound):
			found = false
		default:
			return nil, apierr.Internal(fmt.Errorf("load identity for login: %w", err))
		}
	}
	ok, rehash, err := t.hasher.verifyPassword(ctx, hash, req.GetPassword())
	if err != nil {
		if ae := (*apierr.Error)(nil); errors.As(err, &ae) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		s.logger.ErrorContext(ctx, "stored password hash unusable", "identity_id", ident.ID, "err", err)
		ok = false
	}
	if !ok || !found || hash == dummyHash() || !ident.IsActive {
		t.recordFailure(ctx, acctKey, ipKey)
		if tenantFound {
			s.emitLoginEvent(ctx, tenant, "auth.login.failed", ident.ID, req.GetIdentifier(), c, "invalid_credentials")
			s.recordAuth(ctx, authAudit{action: "auth.login", tenant: tenant, identity: ident.ID, externalID: req.GetIdentifier(),
				err: errLoginFailed(), reason: "invalid_credentials", method: methodPassword})
		}
		return nil, errLoginFailed()
	}
	if rehash {
		if newHash, err := t.hasher.hashPassword(ctx, req.GetPassword()); err == nil {
			err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
				return tx.SetIdentityPasswordHash(ctx, sqlc.SetIdentityPasswordHashParams{ID: ident.ID, PasswordHash: &newHash})
			})
			if err != nil {
				s.logger.WarnContext(ctx, "password rehash failed", "identity_id", ident.ID, "err", err)
			}
		}
	}
	method := methodPassword
	if t.second != nil {
		enabled, err := t.second.Enabled(ctx, tenant, ident.ID)
		if err != nil {
			return nil, apierr.Internal(fmt.Errorf("second factor state: %w", err))
		}
		if enabled {
			if req.GetMfaCode() == "" {
				ch, err := t.newChallenge(ctx, mfaChallenge{Tenant: tenant, Identity: ident.ID, ExternalID: req.GetIdentifier(), UserAgent: req.GetUserAgent(), DeviceName: req.GetDeviceName()})
				if err != nil {
					return nil, err
				}
				return &identityv1.LoginResponse{Result: &identityv1.LoginResponse_MfaChallenge{MfaChallenge: ch}}, nil
			}
			if err := t.second.Verify(ctx, tenant, ident.ID, req.GetMfaCode()); err != nil {
				t.recordFailure(ctx, acctKey, ipKey)
				s.emitLoginEvent(ctx, tenant, "auth.login.failed", ident.ID, req.GetIdentifier(), c, "invalid_second_factor")
				s.recordAuth(ctx, authAudit{action: "auth.login", tenant: tenant, identity: ident.ID, externalID: req.GetIdentifier(),
					err: errLoginFailed(), reason: "invalid_second_factor", method: methodPasswordMFA})
				return nil, errLoginFailed()
			}
			method = methodPasswordMFA
		}
	}
	// Failures are forgiven only once sign-in is complete: a right password with a
	// wrong second factor keeps counting, so codes cannot be guessed by alternating.
	t.clearFailures(ctx, acctKey)
	toks, identity, enrolling, err := s.completeLoginEnrolling(ctx, tenant, ident.ID, method, req.GetUserAgent(), req.GetDeviceName())
	if err != nil {
		return nil, err
	}
	return &identityv1.LoginResponse{
		Result: &identityv1.LoginResponse_Tokens{Tokens: toks}, Identity: identity, MfaEnrollmentRequired: enrolling,
	}, nil
}

// completeLogin opens the session of a successful sign-in.
func (s *Service) completeLogin(ctx context.Context, tenant, identityID uuid.UUID, method, userAgent, deviceName string) (*identityv1.Tokens, *identityv1.Identity, error) {
	toks, ident, _, err := s.completeLoginEnrolling(ctx, tenant, identityID, method, userAgent, deviceName)
	return toks, ident, err
}

// completeLoginEnrolling is completeLogin that also says whether the tokens are
// an MFA-enrollment token only (openSession).
func (s *Service) completeLoginEnrolling(ctx context.Context, tenant, identityID uuid.UUID, method, userAgent, deviceName string) (*identityv1.Tokens, *identityv1.Identity, bool, error) {
	var (
		toks      *identityv1.Tokens
		over      []sqlc.IdentitySession
		ident     sqlc.IdentityIdentity
		c         = clientOf(ctx)
		outProt   *identityv1.Identity
		enrolling bool
	)
	if err := s.tokens.ready(ctx); err != nil {
		return nil, nil, false, err
	}
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		var err error
		// The row stays locked (shared) until commit, so a deactivation, deletion
		// or role change running now either came first and is seen here, or waits
		// for this sign-in and then revokes the session it opened.
		ident, err = tx.LockIdentityForSignIn(ctx, identityID)
		if err != nil {
			return err
		}
		if !ident.IsActive {
			return errLoginFailed()
		}
		toks, over, enrolling, err = s.openSession(ctx, tx, ident, method, userAgent, deviceName)
		if err != nil {
			return err
		}
		outProt, err = identityToProto(ident)
		if err != nil {
			return err
		}
		// The identity signing in may read itself, sensitive claims included.
		if err := s.fillSensitiveClaims(ctx, tx, outProt); err != nil {
			return err
		}
		ev, err := loginEvent(tenant, "auth.login.succeeded", ident.ID, ident.ExternalID, c, method)
		if err != nil {
			return err
		}
		return tx.Emit(ctx, ev)
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = errLoginFailed()
		}
		s.recordAuth(ctx, authAudit{action: "auth.login", tenant: tenant, identity: identityID, err: err, method: method})
		return nil, nil, false, err
	}
	s.applyRevocations(over)
	sid, _ := uuid.Parse(toks.GetSessionId())
	s.recordAuth(ctx, authAudit{action: "auth.login", tenant: tenant, identity: identityID, externalID: ident.ExternalID,
		sessionID: sid, method: method})
	return toks, outProt, enrolling, nil
}

type loginEventData struct {
	IdentityID string `json:"identity_id,omitempty"`
	ExternalID string `json:"external_id"`
	ClientIP   string `json:"client_ip,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

func loginEvent(tenant uuid.UUID, typ string, identity uuid.UUID, externalID string, c client, detail string) (bus.Event, error) {
	d := loginEventData{ExternalID: externalID, ClientIP: c.ip, UserAgent: c.userAgent, Detail: detail}
	subject := ""
	if identity != uuid.Nil {
		d.IdentityID = identity.String()
		subject = d.IdentityID
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return bus.Event{}, err
	}
	return bus.NewEvent(tenant.String(), typ, EventSource, subject, json.RawMessage(raw))
}

// emitLoginEvent records a failed sign-in in its own transaction.
func (s *Service) emitLoginEvent(ctx context.Context, tenant uuid.UUID, typ string, identity uuid.UUID, externalID string, c client, detail string) {
	ev, err := loginEvent(tenant, typ, identity, externalID, c, detail)
	if err == nil {
		err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error { return tx.Emit(ctx, ev) })
	}
	if err != nil {
		s.logger.WarnContext(ctx, "login event not recorded", "type", typ, "err", err)
	}
}

// lockKeys are the lockout counters of an identifier in a tenant (hashed, so the
// store holds no identifiers) and of a client address.
func lockKeys(tenant uuid.UUID, identifier, ip string) (acct, addr string) {
	h := sha256.Sum256([]byte(tenant.String() + "\x00" + strings.ToLower(identifier)))
	return "identity:login:acct:" + hex.EncodeToString(h[:16]), "identity:login:ip:" + ip
}

// lockDelay grows with each failure past the threshold: 1s, 2s, 4s ... 15 minutes.
func lockDelay(failures, threshold int64) time.Duration {
	n := failures - threshold
	if n < 0 {
		return 0
	}
	if n > 10 {
		return 15 * time.Minute
	}
	return min(time.Second<<n, 15*time.Minute)
}

// checkLock refuses a sign-in while the identifier or the address is locked. The
// answer is the same whether the identifier exists or not.
func (t *tokens) checkLock(ctx context.Context, keys ...string) error {
	now := time.Now()
	for _, k := range keys {
		v, err := t.kv.Get(ctx, k+":until")
		if err != nil {
			continue
		}
		until, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || now.UnixMilli() >= until {
			continue
		}
		wait := time.Duration(until-now.UnixMilli())*time.Millisecond + time.Second - 1
		secs := strconv.Itoa(int(wait / time.Second))
		_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", secs))
		return apierr.New(codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_ACCOUNT_LOCKED,
			"too many failed sign-ins; retry in %s seconds", secs)
	}
	return nil
}

// recordFailure counts a failed sign-in and locks past the thresholds. Failures of
// the lockout store are logged, not fatal: sign-in still needs the password.
func (t *tokens) recordFailure(ctx context.Context, acctKey, ipKey string) {
	for _, k := range []struct {
		key       string
		threshold int
	}{{acctKey, t.cfg.LockoutThreshold}, {ipKey, t.cfg.LockoutIPThreshold}} {
		n, err := t.kv.Incr(ctx, k.key+":fails", time.Hour)
		if err != nil {
			continue
		}
		if d := lockDelay(n, int64(k.threshold)); d > 0 {
			until := time.Now().Add(d).UnixMilli()
			_ = t.kv.Set(ctx, k.key+":until", []byte(strconv.FormatInt(until, 10)), d)
		}
	}
}

func (t *tokens) clearFailures(ctx context.Context, acctKey string) {
	_ = t.kv.Delete(ctx, acctKey+":fails", acctKey+":until")
}

// newChallenge stores a pending second-factor sign-in under a random id.
func (t *tokens) newChallenge(ctx context.Context, ch mfaChallenge) (*identityv1.MfaChallenge, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, apierr.Internal(err)
	}
	id := base64.RawURLEncoding.EncodeToString(b)
	raw, err := json.Marshal(ch)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	if err := t.kv.Set(ctx, challengeKey(id), raw, mfaChallengeTTL); err != nil {
		return nil, apierr.Internal(fmt.Errorf("store mfa challenge: %w", err))
	}
	return &identityv1.MfaChallenge{
		ChallengeId: id,
		Methods:     []identityv1.MfaMethod{identityv1.MfaMethod_MFA_METHOD_TOTP, identityv1.MfaMethod_MFA_METHOD_BACKUP_CODE},
		ExpireTime:  timestamppb.New(time.Now().Add(mfaChallengeTTL)),
	}, nil
}

func challengeKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return "identity:mfa:challenge:" + hex.EncodeToString(h[:])
}

func (a *authServer) CompleteMfaLogin(ctx context.Context, req *identityv1.CompleteMfaLoginRequest) (*identityv1.CompleteMfaLoginResponse, error) {
	s := a.svc
	t := s.tokens
	if t.second == nil {
		return nil, errLoginFailed()
	}
	key := challengeKey(req.GetChallengeId())
	raw, err := t.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, kv.ErrNotFound) {
			return nil, errLoginFailed()
		}
		return nil, apierr.Internal(fmt.Errorf("load mfa challenge: %w", err))
	}
	// Single use: the first caller to claim it wins.
	claimed, err := t.kv.SetNX(ctx, key+":used", []byte("1"), mfaChallengeTTL)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("claim mfa challenge: %w", err))
	}
	if !claimed {
		return nil, errLoginFailed()
	}
	_ = t.kv.Delete(ctx, key)
	var ch mfaChallenge
	if err := json.Unmarshal(raw, &ch); err != nil {
		return nil, apierr.Internal(fmt.Errorf("decode mfa challenge: %w", err))
	}
	c := clientOf(ctx)
	// The same counters as the password step: the second factor cannot be guessed
	// at leisure either.
	acctKey, ipKey := lockKeys(ch.Tenant, ch.ExternalID, c.ip)
	if err := t.checkLock(ctx, acctKey, ipKey); err != nil {
		return nil, err
	}
	code := req.GetCode()
	if code == "" {
		code = req.GetBackupCode()
	}
	if err := t.second.Verify(ctx, ch.Tenant, ch.Identity, code); err != nil {
		t.recordFailure(ctx, acctKey, ipKey)
		s.emitLoginEvent(ctx, ch.Tenant, "auth.login.failed", ch.Identity, ch.ExternalID, c, "invalid_second_factor")
		s.recordAuth(ctx, authAudit{action: "auth.login", tenant: ch.Tenant, identity: ch.Identity, externalID: ch.ExternalID,
			err: errLoginFailed(), reason: "invalid_second_factor", method: methodPasswordMFA})
		return nil, errLoginFailed()
	}
	t.clearFailures(ctx, acctKey)
	toks, ident, err := s.completeLogin(ctx, ch.Tenant, ch.Identity, methodPasswordMFA, ch.UserAgent, ch.DeviceName)
	if err != nil {
		return nil, err
	}
	resp := &identityv1.CompleteMfaLoginResponse{Tokens: toks, Identity: ident}
	if counter, ok := t.second.(BackupCodeCounter); ok {
		if n, err := counter.BackupCodesRemaining(ctx, ch.Tenant, ch.Identity); err == nil {
			resp.BackupCodesRemaining = int32(n)
		}
	}
	return resp, nil
}

func (a *authServer) Logout(ctx context.Context, req *identityv1.LogoutRequest) (*identityv1.LogoutResponse, error) {
	s := a.svc
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	identity, err := parseID("identity_id", p.IdentityID)
	if err != nil {
		return nil, err
	}
	sid, sidErr := uuid.Parse(p.SessionID)
	if !req.GetAllSessions() && sidErr != nil {
		return nil, apierr.FailedPrecondition("this credential has no session to end; send all_sessions to end every session")
	}
	var revoked []sqlc.IdentitySession
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		if req.GetAllSessions() {
			revoked, err = s.revokeIdentitySessions(ctx, tx, tenant, identity, nil, revokeLogout)
			return err
		}
		row, err := tx.RevokeSession(ctx, sqlc.RevokeSessionParams{ID: sid, RevokeReason: revokeLogout})
		if errors.Is(store.MapErr(err), store.ErrNotFound) {
			return nil // already ended
		}
		if err != nil {
			return err
		}
		revoked = []sqlc.IdentitySession{row}
		return s.recordRevocations(ctx, tx, tenant, revoked)
	})
	if err != nil {
		return nil, err
	}
	s.applyRevocations(revoked)
	return &identityv1.LogoutResponse{RevokedCount: int32(len(revoked))}, nil
}

func (a *authServer) ChangePassword(ctx context.Context, req *identityv1.ChangePasswordRequest) (*identityv1.ChangePasswordResponse, error) {
	s := a.svc
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	identity, err := parseID("identity_id", p.IdentityID)
	if err != nil {
		return nil, err
	}
	settings, err := s.tenantSettings(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if err := checkPasswordPolicy("new_password", req.GetNewPassword(), int(settings.GetPasswordMinLength())); err != nil {
		return nil, err
	}
	var current sqlc.IdentityIdentity
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		current, err = tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: identity})
		return err
	})
	if err != nil {
		return nil, err
	}
	if current.PasswordHash != nil && *current.PasswordHash != "" {
		c := clientOf(ctx)
		acctKey, ipKey := lockKeys(tenant, current.ExternalID, c.ip)
		if err := s.tokens.checkLock(ctx, acctKey, ipKey); err != nil {
			return nil, err
		}
		ok, _, err := s.tokens.hasher.verifyPassword(ctx, *current.PasswordHash, req.GetCurrentPassword())
		if err != nil || !ok {
			if err == nil || !isAPIErr(err) {
				s.tokens.recordFailure(ctx, acctKey, ipKey)
				return nil, apierr.New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED, "current_password is not correct")
			}
			return nil, err
		}
	}
	var except *uuid.UUID
	if sid, err := uuid.Parse(p.SessionID); err == nil {
		except = &sid
	}
	n, err := s.setPassword(ctx, tenant, identity, req.GetNewPassword(), !req.GetKeepOtherSessions(), except)
	if err != nil {
		return nil, err
	}
	return &identityv1.ChangePasswordResponse{RevokedCount: int32(n)}, nil
}

func isAPIErr(err error) bool {
	var ae *apierr.Error
	return errors.As(err, &ae)
}

func (a *authServer) SetPassword(ctx context.Context, req *identityv1.SetPasswordRequest) (*identityv1.SetPasswordResponse, error) {
	s := a.svc
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	identity, err := parseID("identity_id", req.GetIdentityId())
	if err != nil {
		return nil, err
	}
	settings, err := s.tenantSettings(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if err := checkPasswordPolicy("new_password", req.GetNewPassword(), int(settings.GetPasswordMinLength())); err != nil {
		return nil, err
	}
	var target sqlc.IdentityIdentity
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		target, err = tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: identity})
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, apierr.NotFound("identity", req.GetIdentityId())
		}
		return nil, err
	}
	if err := checkGrant(p, allRoles(target.Role, target.Roles)...); err != nil {
		return nil, err
	}
	n, err := s.setPassword(ctx, tenant, identity, req.GetNewPassword(), true, nil)
	if err != nil {
		return nil, err
	}
	return &identityv1.SetPasswordResponse{RevokedCount: int32(n)}, nil
}

// setPassword stores a new argon2id hash and, when revoke is set, ends the
// identity's sessions (but except).
func (s *Service) setPassword(ctx context.Context, tenant, identity uuid.UUID, password string, revoke bool, except *uuid.UUID) (int, error) {
	hash, err := s.tokens.hasher.hashPassword(ctx, password)
	if err != nil {
		return 0, err
	}
	var revoked []sqlc.IdentitySession
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		if err := tx.SetIdentityPasswordHash(ctx, sqlc.SetIdentityPasswordHashParams{ID: identity, PasswordHash: &hash}); err != nil {
			return err
		}
		if revoke {
			revoked, err = s.revokeIdentitySessions(ctx, tx, tenant, identity, except, revokePasswordChange)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	s.applyRevocations(revoked)
	return len(revoked), nil
}

// SetIdentityPassword sets an identity's password, checking the tenant's policy;
// for invitations and administration tools.
func (s *Service) SetIdentityPassword(ctx context.Context, tenant, identity uuid.UUID, password string) error {
	settings, err := s.tenantSettings(ctx, tenant)
	if err != nil {
		return err
	}
	if err := checkPasswordPolicy("password", password, int(settings.GetPasswordMinLength())); err != nil {
		return err
	}
	_, err = s.setPassword(ctx, tenant, identity, password, false, nil)
	return err
}

func (a *authServer) GetJwks(ctx context.Context, _ *identityv1.GetJwksRequest) (*identityv1.GetJwksResponse, error) {
	k := a.svc.tokens.keys
	if _, err := k.signer(); errors.Is(err, errNoSigningKey) {
		if err := k.ensure(ctx, false); err != nil {
			return nil, apierr.Internal(err)
		}
	}
	return &identityv1.GetJwksResponse{Keys: k.published()}, nil
}
