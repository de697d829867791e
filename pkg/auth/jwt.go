package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"

	"github.com/manushya-ai/manushya/pkg/apierr"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// Access tokens are JWTs signed with Ed25519 ("EdDSA"). The algorithm is pinned:
// the header's alg must be exactly this, so "none", HMAC with the public key as the
// secret and every other algorithm are refused before any key is looked at.
const (
	AccessTokenAlg = "EdDSA"
	// MaxAccessTokenTTL is the longest an access token lives; revocation entries are
	// kept this long past the revocation.
	MaxAccessTokenTTL = 15 * time.Minute
	// clockLeeway absorbs clock skew between the issuer and a verifier.
	clockLeeway = 30 * time.Second
)

// AccessClaims are the claims of an access token.
type AccessClaims struct {
	jwt.RegisteredClaims
	TenantID   string   `json:"tid"`
	SessionID  string   `json:"sid"`
	Roles      []string `json:"roles"`
	Scope      string   `json:"scope,omitempty"`
	ExternalID string   `json:"ext,omitempty"`
	Kind       string   `json:"kind,omitempty"`
	// Generation is the identity's token generation when the token was signed;
	// taking a role away raises it, refusing every older token (Revocations).
	Generation int64 `json:"gen,omitempty"`
}

// MFAEnrollmentAudience is the audience of the restricted access tokens that a
// sign-in gets when the tenant requires MFA and the identity has none yet. Being
// another audience, they fail every verifier that expects the real one (a standard
// JWT library included); JWTVerifier accepts them only for MFAEnrollmentMethods.
func MFAEnrollmentAudience(audience string) string { return audience + "#mfa-enrollment" }

// MFAEnrollmentScopes are the permissions of an MFA-enrollment token; they are
// its scopes, so authorization narrows to them as well.
var MFAEnrollmentScopes = []string{"auth.mfa_setup", "auth.mfa_verify", "auth.logout"}

// MFAEnrollmentMethods are the only RPCs an MFA-enrollment token may call.
var MFAEnrollmentMethods = []string{
	"/manushya.identity.v1.AuthService/SetupMfa",
	"/manushya.identity.v1.AuthService/VerifyMfa",
	"/manushya.identity.v1.AuthService/Logout",
}

// Principal is the caller the claims describe.
func (c *AccessClaims) Principal() *Principal {
	var scopes []string
	if c.Scope != "" {
		scopes = strings.Fields(c.Scope)
	}
	return &Principal{
		TenantID: c.TenantID, IdentityID: c.Subject, ExternalID: c.ExternalID, Kind: c.Kind,
		Roles: c.Roles, Scopes: scopes, SessionID: c.SessionID,
	}
}

// KeySource finds the public key of a key id. Implementations: the identity
// service's own keyring, and JWKSKeys in other processes.
type KeySource interface {
	PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error)
}

// ErrUnknownKey is returned by a KeySource for a kid it does not know.
var ErrUnknownKey = errors.New("unknown signing key")

// errKeysUnavailable marks a key lookup that failed for another reason (the
// identity service is unreachable): the caller should retry, not be told the token
// is bad.
var errKeysUnavailable = errors.New("signing keys unavailable")

// JWTVerifierConfig configures a JWTVerifier.
type JWTVerifierConfig struct {
	Keys     KeySource
	Issuer   string
	Audience string
	// Revoked, when set, refuses tokens of revoked sessions.
	Revoked *Revocations
	// CacheSize bounds the verified-token cache; 0 means 10000, negative disables it.
	CacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// JWTVerifier checks access tokens and returns their principal. A token that
// verified once is remembered (by its SHA-256) until it expires, so the signature
// check is paid once per token, not once per request; expiry and revocation are
// checked on every call.
type JWTVerifier struct {
	cfg    JWTVerifierConfig
	parser *jwt.Parser

	mu    sync.RWMutex
	cache map[[32]byte]verified
}

type verified struct {
	p          *Principal
	notBefore  time.Time
	expires    time.Time
	generation int64
}

// NewJWTVerifier returns a verifier; Keys, Issuer and Audience are required.
func NewJWTVerifier(cfg JWTVerifierConfig) (*JWTVerifier, error) {
	if cfg.Keys == nil || cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: jwt verifier needs keys, an issuer and an audience")
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &JWTVerifier{
		cfg: cfg,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{AccessTokenAlg}),
			jwt.WithIssuer(cfg.Issuer),
			// Either audience passes the parser; Verify tells them apart.
			jwt.WithAudience(cfg.Audience, MFAEnrollmentAudience(cfg.Audience)),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(clockLeeway),
			jwt.WithTimeFunc(cfg.Now),
		),
		cache: map[[32]byte]verified{},
	}, nil
}

// Authenticate implements Authenticator for bearer JWTs; other kinds are unknown.
func (v *JWTVerifier) Authenticate(ctx context.Context, cred Credential) (*Principal, error) {
	if cred.Kind != CredentialJWT {
		return nil, errUnknownCredential()
	}
	return v.Verify(ctx, cred.Value)
}

func errUnknownCredential() error {
	return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN, "credential not recognised")
}

// Verify checks token and returns its principal.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (*Principal, error) {
	now := v.cfg.Now()
	key := sha256.Sum256([]byte(token))
	if v.cfg.CacheSize > 0 {
		v.mu.RLock()
		e, ok := v.cache[key]
		v.mu.RUnlock()
		if ok {
			if !now.Before(e.expires.Add(clockLeeway)) {
				return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, "access token has expired")
			}
			if now.Add(clockLeeway).Before(e.notBefore) {
				return nil, errUnknownCredential()
			}
			if err := v.checkRevoked(e.p, e.generation); err != nil {
				return nil, err
			}
			if err := checkEnrollment(ctx, e.p); err != nil {
				return nil, err
			}
			return e.p, nil
		}
	}
	claims := &AccessClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, ErrUnknownKey
		}
		pk, err := v.cfg.Keys.PublicKey(ctx, kid)
		if err != nil && !errors.Is(err, ErrUnknownKey) {
			return nil, fmt.Errorf("%w: %w", errKeysUnavailable, err)
		}
		return pk, err
	})
	if err != nil {
		return nil, jwtError(err)
	}
	if claims.Subject == "" || claims.TenantID == "" || claims.SessionID == "" || claims.ExpiresAt == nil ||
		claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > MaxAccessTokenTTL {
		return nil, errUnknownCredential()
	}
	if err := v.checkRevoked(&Principal{IdentityID: claims.Subject, SessionID: claims.SessionID}, claims.Generation); err != nil {
		return nil, err
	}
	p := claims.Principal()
	if slices.Contains(claims.Audience, MFAEnrollmentAudience(v.cfg.Audience)) {
		p.MFAEnrollmentOnly = true
		p.Scopes = slices.Clone(MFAEnrollmentScopes)
	}
	if err := checkEnrollment(ctx, p); err != nil {
		return nil, err
	}
	if v.cfg.CacheSize > 0 {
		e := verified{p: p, expires: claims.ExpiresAt.Time, generation: claims.Generation}
		if claims.NotBefore != nil {
			e.notBefore = claims.NotBefore.Time
		}
		v.mu.Lock()
		if len(v.cache) >= v.cfg.CacheSize {
			for k, old := range v.cache {
				if !now.Before(old.expires.Add(clockLeeway)) {
					delete(v.cache, k)
				}
			}
			if len(v.cache) >= v.cfg.CacheSize {
				clear(v.cache)
			}
		}
		v.cache[key] = e
		v.mu.Unlock()
	}
	return p, nil
}

// checkRevoked refuses tokens of revoked sessions and of token generations that a
// role change retired. The latter say "expired": the session lives on, and a
// refresh gets a token with the identity's current roles.
func (v *JWTVerifier) checkRevoked(p *Principal, generation int64) error {
	if v.cfg.Revoked == nil {
		return nil
	}
	if v.cfg.Revoked.IsRevoked(p.SessionID) {
		return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED, "the session of this token was revoked")
	}
	if v.cfg.Revoked.IsStale(p.IdentityID, generation) {
		return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED,
			"the identity's roles changed after this token was issued; refresh the session for a new one")
	}
	return nil
}

// checkEnrollment keeps an MFA-enrollment token to the methods that set up a
// second factor. The method comes from the gRPC server's context, so this holds
// in every service whatever its tenant's policies say.
func checkEnrollment(ctx context.Context, p *Principal) error {
	if !p.MFAEnrollmentOnly {
		return nil
	}
	if m, ok := grpc.Method(ctx); ok && slices.Contains(MFAEnrollmentMethods, m) {
		return nil
	}
	return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_MFA_REQUIRED,
		"the tenant requires a second factor: this token only sets one up (/v1/auth/mfa/setup, then /v1/auth/mfa/verify); sign in again after that")
}

// jwtError maps a parse failure to a reason that says what kind of failure it was
// and nothing about keys, tenants or sessions.
func jwtError(err error) error {
	switch {
	case errors.Is(err, ErrUnknownKey):
		return errUnknownCredential()
	case errors.Is(err, errKeysUnavailable):
		return apierr.Unavailable("signing keys are unavailable; retry shortly").Wrap(err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, "access token has expired")
	case errors.Is(err, jwt.ErrTokenMalformed), errors.Is(err, jwt.ErrTokenSignatureInvalid),
		errors.Is(err, jwt.ErrTokenUnverifiable):
		return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED, "access token is malformed or its signature is invalid")
	}
	return errUnknownCredential()
}

// KeySet is a fixed set of public keys, for tests and for the identity service's
// own keyring snapshot.
type KeySet map[string]ed25519.PublicKey

// PublicKey implements KeySource.
func (k KeySet) PublicKey(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if pk, ok := k[kid]; ok {
		return pk, nil
	}
	return nil, ErrUnknownKey
}

// Split routes bearer JWTs to jwt and every other credential to other, so a
// process verifies access tokens locally and asks the identity service only about
// API keys.
func Split(jwtAuth, other Authenticator) Authenticator {
	return AuthenticatorFunc(func(ctx context.Context, cred Credential) (*Principal, error) {
		if cred.Kind == CredentialJWT {
			return jwtAuth.Authenticate(ctx, cred)
		}
		return other.Authenticate(ctx, cred)
	})
}
