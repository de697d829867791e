package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/kv"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/secretbox"
	"github.com/manushya-ai/manushya/pkg/worker"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// TokenConfig configures access tokens, refresh tokens, sessions and logins. Zero
// values take the defaults noted.
type TokenConfig struct {
	// Issuer is the "iss" of access tokens (default "manushya").
	Issuer string
	// Audience is the "aud" of access tokens (default "manushya").
	Audience string
	// AccessTTL is the access tokens' lifetime (default and maximum 15 minutes).
	AccessTTL time.Duration
	// SessionTTL is how long a session lives regardless of use (default 30 days).
	SessionTTL time.Duration
	// RefreshGrace is how long a spent refresh token still yields its successor, so
	// concurrent refreshes of one client all succeed (default 10 seconds).
	RefreshGrace time.Duration
	// EncryptionKey is the key that sealed signing keys and refresh successors
	// before the keyring (auth.encryption_key): 64 hex characters or base64 of 32
	// bytes. Empty means they were sealed under a key derived from the API key
	// pepper. It only opens those older values now.
	EncryptionKey string
	// KeyRotation is how often a new signing key is made (default 30 days).
	KeyRotation time.Duration
	// KeyPrepublish is how long a new key is published in the JWKS before it signs,
	// so verifiers caching the key set learn it first (default 10 minutes).
	KeyPrepublish time.Duration
	// DefaultMaxSessions caps sessions per identity when the tenant sets no cap
	// (default 100).
	DefaultMaxSessions int
	// SessionRetention keeps expired and revoked sessions this long before cleanup
	// deletes them (default 7 days).
	SessionRetention time.Duration
	// HashConcurrency bounds concurrent password hashes (default GOMAXPROCS-1, at
	// least 1). The pool is one per process: the first service made sizes it.
	HashConcurrency int
	// LockoutThreshold is how many failed sign-ins of one identifier lock it
	// (default 5); LockoutIPThreshold the same per client address (default 50).
	LockoutThreshold   int
	LockoutIPThreshold int
}

func (c *TokenConfig) defaults() {
	if c.Issuer == "" {
		c.Issuer = "manushya"
	}
	if c.Audience == "" {
		c.Audience = "manushya"
	}
	if c.AccessTTL <= 0 || c.AccessTTL > auth.MaxAccessTokenTTL {
		c.AccessTTL = auth.MaxAccessTokenTTL
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 30 * 24 * time.Hour
	}
	if c.RefreshGrace <= 0 {
		c.RefreshGrace = 10 * time.Second
	}
	if c.KeyRotation <= 0 {
		c.KeyRotation = 30 * 24 * time.Hour
	}
	if c.KeyPrepublish <= 0 {
		c.KeyPrepublish = 10 * time.Minute
	}
	if c.DefaultMaxSessions <= 0 {
		c.DefaultMaxSessions = 100
	}
	if c.SessionRetention <= 0 {
		c.SessionRetention = 7 * 24 * time.Hour
	}
	if c.LockoutThreshold <= 0 {
		c.LockoutThreshold = 5
	}
	if c.LockoutIPThreshold <= 0 {
		c.LockoutIPThreshold = 50
	}
}

// SecondFactor is the hook through which sign-in asks for a second factor. The MFA
// code implements it and installs it with Service.SetSecondFactor.
type SecondFactor interface {
	// Enabled reports whether the identity must present a second factor.
	Enabled(ctx context.Context, tenant, identity uuid.UUID) (bool, error)
	// Verify checks a TOTP or backup code (spending it); a wrong code is an error
	// whose reason is kept from the caller (sign-in fails as a wrong password does).
	Verify(ctx context.Context, tenant, identity uuid.UUID, code string) error
}

// BackupCodeCounter is optionally implemented by a SecondFactor, so
// CompleteMfaLogin can say how many backup codes are left.
type BackupCodeCounter interface {
	BackupCodesRemaining(ctx context.Context, tenant, identity uuid.UUID) (int, error)
}

// tokens is the token, login and session state of the service.
type tokens struct {
	cfg      TokenConfig
	keys     *keyring
	sealer   secretbox.Sealer // pre-keyring key; SSO still seals with it, the rest uses Service.sealer
	verifier *auth.JWTVerifier
	revoked  *auth.Revocations
	hasher   *hasher
	kv       kv.Store
	second   SecondFactor
	bus      *bus.Bus
}

func newTokens(cfg TokenConfig, st *store.Store, pepper string, kvStore kv.Store, s *Service) (*tokens, error) {
	cfg.defaults()
	sealer, err := deriveSealer(cfg.EncryptionKey, pepper)
	if err != nil {
		return nil, err
	}
	if kvStore == nil {
		kvStore = kv.NewMemory()
	}
	t := &tokens{
		cfg: cfg, sealer: sealer, revoked: auth.NewRevocations(),
		hasher: sharedHasher(cfg.HashConcurrency), kv: kvStore,
	}
	t.keys = newKeyring(st, s.sealer, cfg.KeyRotation, s.logger)
	t.keys.prepublish = cfg.KeyPrepublish
	t.verifier, err = auth.NewJWTVerifier(auth.JWTVerifierConfig{
		Keys: t.keys, Issuer: cfg.Issuer, Audience: cfg.Audience, Revoked: t.revoked,
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// SetSecondFactor installs the second-factor check used by Login.
func (s *Service) SetSecondFactor(sf SecondFactor) { s.tokens.second = sf }

// Verifier returns the access-token verifier of this process (keys from the
// database, revocations from the bus).
func (s *Service) Verifier() *auth.JWTVerifier { return s.tokens.verifier }

// Revocations returns the revoked-session set the verifier checks.
func (s *Service) Revocations() *auth.Revocations { return s.tokens.revoked }

// RotateSigningKey makes a new signing key now; the old ones keep verifying until
// their tokens expire.
func (s *Service) RotateSigningKey(ctx context.Context) error { return s.tokens.keys.ensure(ctx, true) }

// Refresh tokens read "mrt_" and 43 base64url characters (32 random bytes).
const (
	refreshTokenPrefix = "mrt_"
	refreshTokenBytes  = 32
)

func newRefreshToken() (string, []byte, error) {
	b := make([]byte, refreshTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("refresh token: %w", err)
	}
	tok := refreshTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(tok))
	return tok, h[:], nil
}

// parseRefreshToken returns the hash of a well-formed refresh token.
func parseRefreshToken(tok string) ([]byte, bool) {
	raw, ok := strings.CutPrefix(tok, refreshTokenPrefix)
	if !ok {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) != refreshTokenBytes {
		return nil, false
	}
	h := sha256.Sum256([]byte(tok))
	return h[:], true
}

// ready makes sure a signing key is loaded before a transaction that signs starts,
// so signing never opens a second connection while holding one.
func (t *tokens) ready(ctx context.Context) error {
	if _, err := t.keys.signer(); errors.Is(err, errNoSigningKey) {
		if err := t.keys.ensure(ctx, false); err != nil {
			return apierr.Internal(err)
		}
	}
	return nil
}

// signAccessToken signs an access token for the session. An enrollment token is
// the restricted one of a sign-in that must set up MFA first: another audience,
// accepted only by the MFA setup methods (auth.MFAEnrollmentAudience).
func (t *tokens) signAccessToken(ctx context.Context, ident sqlc.IdentityIdentity, sessionID uuid.UUID, enrollment bool) (string, error) {
	key, err := t.keys.signer()
	if errors.Is(err, errNoSigningKey) {
		// Not started yet (tools, tests): make or load the key now.
		if err := t.keys.ensure(context.WithoutCancel(ctx), false); err != nil {
			return "", apierr.Internal(err)
		}
		key, err = t.keys.signer()
	}
	if err != nil {
		return "", apierr.Internal(err)
	}
	now := time.Now()
	aud := t.cfg.Audience
	if enrollment {
		aud = auth.MFAEnrollmentAudience(aud)
	}
	claims := &auth.AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: t.cfg.Issuer, Subject: ident.ID.String(), Audience: jwt.ClaimStrings{aud},
			ExpiresAt: jwt.NewNumericDate(now.Add(t.cfg.AccessTTL)), NotBefore: jwt.NewNumericDate(now),
			IssuedAt: jwt.NewNumericDate(now), ID: newID().String(),
		},
		TenantID: ident.TenantID.String(), SessionID: sessionID.String(),
		Roles: allRoles(ident.Role, ident.Roles), ExternalID: ident.ExternalID, Kind: ident.Kind,
		Generation: ident.TokenGeneration,
	}
	if enrollment {
		claims.Scope = strings.Join(auth.MFAEnrollmentScopes, " ")
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = key.kid
	s, err := tok.SignedString(key.priv)
	if err != nil {
		return "", apierr.Internal(fmt.Errorf("sign access token: %w", err))
	}
	return s, nil
}

// newRefreshTokenRow stores a fresh refresh token of the session and returns it.
func (t *tokens) newRefreshTokenRow(ctx context.Context, tx *store.Tx, tenant, sessionID uuid.UUID) (string, []byte, error) {
	tok, h, err := newRefreshToken()
	if err != nil {
		return "", nil, err
	}
	if err := tx.CreateRefreshToken(ctx, sqlc.CreateRefreshTokenParams{TokenHash: h, TenantID: tenant, SessionID: sessionID}); err != nil {
		return "", nil, fmt.Errorf("store refresh token: %w", err)
	}
	if err := tx.CreateRefreshTokenTenant(ctx, sqlc.CreateRefreshTokenTenantParams{TokenHash: h, TenantID: tenant}); err != nil {
		return "", nil, fmt.Errorf("index refresh token: %w", err)
	}
	return tok, h, nil
}

func (t *tokens) tokensOf(access, refresh string, sessionID uuid.UUID) *identityv1.Tokens {
	return &identityv1.Tokens{
		AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresIn: int32(t.cfg.AccessTTL / time.Second), SessionId: sessionID.String(),
	}
}

// errRefreshUnknown is every refresh failure that must not say more.
func errRefreshUnknown() error {
	return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN, "refresh token not recognised")
}

// refresh exchanges a refresh token for the next pair. Concurrent calls with one
// token queue on the token's row lock; those arriving within the grace window
// after the first get the same successor, re-issued from its sealed copy. A spent
// token presented later is theft (or a badly broken client): the session is
// revoked with every token of its family.
func (s *Service) refresh(ctx context.Context, token string) (*identityv1.Tokens, error) {
	t := s.tokens
	h, ok := parseRefreshToken(token)
	if !ok {
		return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED, "refresh token is malformed")
	}
	tenant, err := s.store.Global().TenantOfRefreshToken(ctx, h)
	if err != nil {
		if errors.Is(store.MapErr(err), store.ErrNotFound) {
			return nil, errRefreshUnknown()
		}
		return nil, apierr.Internal(fmt.Errorf("look up refresh token: %w", err))
	}
	if err := t.ready(ctx); err != nil {
		return nil, err
	}
	var (
		out     *identityv1.Tokens
		reused  bool
		revoked []sqlc.IdentitySession
		// Whose session it is, for the audit log.
		actor, session uuid.UUID
	)
	client := clientOf(ctx)
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err := tx.LockRefreshToken(ctx, h)
		if err != nil {
			return err
		}
		actor, session = row.IdentityID, row.SessionID
		now := time.Now()
		switch {
		case row.SessionRevokeTime != nil:
			return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED, "the session was revoked")
		case !row.SessionExpireTime.After(now):
			return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, "the session has expired")
		}
		// Held until commit: a deactivation or role change running now either
		// comes first (and this sees it) or waits and then revokes this token.
		ident, err := tx.LockIdentityForSignIn(ctx, row.IdentityID)
		if err != nil {
			return err
		}
		if !ident.IsActive {
			return errRefreshUnknown()
		}
		var next string
		switch {
		case row.SpendTime == nil:
			next, _, err = t.newRefreshTokenRow(ctx, tx, tenant, row.SessionID)
			if err != nil {
				return err
			}
			sealed, err := s.sealer.Seal(ctx, successorRef(tenant, h), []byte(next))
			if err != nil {
				return apierr.Internal(fmt.Errorf("seal refresh successor: %w", err))
			}
			if err := tx.SpendRefreshToken(ctx, sqlc.SpendRefreshTokenParams{TokenHash: h, Successor: sealed}); err != nil {
				return fmt.Errorf("spend refresh token: %w", err)
			}
		case now.Sub(*row.SpendTime) <= t.cfg.RefreshGrace && row.Successor != nil:
			plain, err := s.sealer.Open(ctx, successorRef(tenant, h), row.Successor)
			if err != nil {
				return apierr.Internal(fmt.Errorf("open refresh successor: %w", err))
			}
			next = string(plain)
		default:
			reused = true
			sess, err := tx.RevokeSession(ctx, sqlc.RevokeSessionParams{ID: row.SessionID, RevokeReason: revokeReuse})
			if err != nil {
				return err
			}
			revoked = append(revoked, sess)
			return s.recordRevocations(ctx, tx, tenant, revoked)
		}
		if err := tx.TouchSession(ctx, sqlc.TouchSessionParams{ID: row.SessionID, ClientIp: client.ip}); err != nil {
			return fmt.Errorf("touch session: %w", err)
		}
		access, err := t.signAccessToken(ctx, ident, row.SessionID, false)
		if err != nil {
			return err
		}
		out = t.tokensOf(access, next, row.SessionID)
		return nil
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = errRefreshUnknown()
		}
		s.recordAuth(ctx, authAudit{action: "auth.token.refresh", tenant: tenant, identity: actor, sessionID: session, err: err})
		return nil, err
	}
	s.applyRevocations(revoked)
	if reused {
		s.logger.WarnContext(ctx, "refresh token reused outside the grace window; session revoked",
			"tenant_id", tenant, "session_id", revoked[0].ID, "client_ip", client.ip)
		err := apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED,
			"this refresh token was already used; the session has been revoked")
		s.recordAuth(ctx, authAudit{action: "auth.token.refresh", tenant: tenant, identity: actor, sessionID: session,
			err: err, reason: "refresh_token_reuse"})
		return nil, err
	}
	s.recordAuth(ctx, authAudit{action: "auth.token.refresh", tenant: tenant, identity: actor, sessionID: session})
	return out, nil
}

// initTokens builds the token state at construction; nothing touches the database
// until Start (or the first token issued).
func (s *Service) initTokens(cfg TokenConfig, pepper string, deps Deps) error {
	t, err := newTokens(cfg, s.store, pepper, deps.KV, s)
	if err != nil {
		return err
	}
	t.bus = deps.Bus
	s.tokens = t
	return nil
}

// startTokens makes sure a signing key exists, loads the revoked sessions, and
// starts following revocations on the bus and the scheduled sweeper.
func (s *Service) startTokens(ctx context.Context, workers *worker.Group) error {
	if err := s.tokens.keys.ensure(ctx, false); err != nil {
		return fmt.Errorf("identity: signing keys: %w", err)
	}
	if err := s.loadRevocations(ctx); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if b := s.tokens.bus; b != nil {
		workers.Go(ctx, "identity session revocations", func(ctx context.Context) error {
			return s.tokens.revoked.Follow(ctx, b.JS, b.StreamName(), s.logger)
		})
	}
	workers.Go(ctx, "identity session sweeper", func(ctx context.Context) error {
		return s.runSweeper(ctx, 10*time.Minute)
	})
	// Replicas learn of keys another replica made (rotation) within a minute, well
	// inside the prepublish window.
	workers.Go(ctx, "identity signing keys", func(ctx context.Context) error {
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
				if err := s.tokens.keys.load(ctx); err != nil && ctx.Err() == nil {
					s.logger.WarnContext(ctx, "reload signing keys", "err", err)
				}
			}
		}
	})
	return nil
}
