package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

type jwtFixture struct {
	priv    ed25519.PrivateKey
	pub     ed25519.PublicKey
	revoked *auth.Revocations
	v       *auth.JWTVerifier
}

func newJWTFixture(t testing.TB) *jwtFixture {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	f := &jwtFixture{priv: priv, pub: pub, revoked: auth.NewRevocations()}
	f.v, err = auth.NewJWTVerifier(auth.JWTVerifierConfig{
		Keys: auth.KeySet{"k1": pub}, Issuer: "manushya", Audience: "manushya", Revoked: f.revoked,
	})
	require.NoError(t, err)
	return f
}

func claims(mod func(*auth.AccessClaims)) *auth.AccessClaims {
	now := time.Now()
	c := &auth.AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "manushya", Audience: jwt.ClaimStrings{"manushya"}, Subject: "0190a2b4-0000-7000-8000-000000000001",
			ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute)), IssuedAt: jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now), ID: "jti-1",
		},
		TenantID: "0190a2b4-0000-7000-8000-0000000000aa", SessionID: "0190a2b4-0000-7000-8000-0000000000ee",
		Roles: []string{"user", "billing"}, Scope: "read write", ExternalID: "ada@example.com", Kind: "user",
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func (f *jwtFixture) sign(t testing.TB, c *auth.AccessClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(f.priv)
	require.NoError(t, err)
	return s
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestJWTVerifyPrincipal(t *testing.T) {
	t.Parallel()
	f := newJWTFixture(t)
	p, err := f.v.Verify(context.Background(), f.sign(t, claims(nil)))
	require.NoError(t, err)
	require.Equal(t, &auth.Principal{
		TenantID: "0190a2b4-0000-7000-8000-0000000000aa", IdentityID: "0190a2b4-0000-7000-8000-000000000001",
		ExternalID: "ada@example.com", Kind: "user", Roles: []string{"user", "billing"},
		Scopes: []string{"read", "write"}, SessionID: "0190a2b4-0000-7000-8000-0000000000ee",
	}, p)
	_, err = f.v.Authenticate(context.Background(), auth.Credential{Kind: auth.CredentialAPIKey, Value: f.sign(t, claims(nil))})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
}

func TestJWTAttacksAreRefused(t *testing.T) {
	t.Parallel()
	f := newJWTFixture(t)
	good := f.sign(t, claims(nil))
	parts := strings.Split(good, ".")
	hsWithPublicKey := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString([]byte(f.pub))
		require.NoError(t, err)
		return s
	}()
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	foreign := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims(nil))
		tok.Header["kid"] = "k1"
		s, _ := tok.SignedString(otherKey)
		return s
	}()
	tamperedSig := []byte(parts[2])
	tamperedSig[5] ^= 0x01
	if tamperedSig[5] == parts[2][5] {
		tamperedSig[5] = 'A'
	}
	elevated := claims(func(c *auth.AccessClaims) { c.Roles = []string{"admin"} })

	for name, tc := range map[string]struct {
		token  string
		reason errorsv1.ErrorReason
	}{
		"alg none": {
			token:  b64(map[string]string{"alg": "none", "typ": "JWT", "kid": "k1"}) + "." + parts[1] + ".",
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED,
		},
		"alg None with a signature": {
			token:  b64(map[string]string{"alg": "None", "kid": "k1"}) + "." + parts[1] + "." + parts[2],
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED,
		},
		"HS256 signed with the public key": {token: hsWithPublicKey, reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED},
		"tampered signature": {
			token: parts[0] + "." + parts[1] + "." + string(tamperedSig), reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED,
		},
		"claims swapped under a valid signature": {
			token:  parts[0] + "." + b64(elevated) + "." + parts[2],
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED,
		},
		"signed by another key": {token: foreign, reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED},
		"wrong audience": {
			token:  f.sign(t, claims(func(c *auth.AccessClaims) { c.Audience = jwt.ClaimStrings{"other"} })),
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN,
		},
		"wrong issuer": {
			token:  f.sign(t, claims(func(c *auth.AccessClaims) { c.Issuer = "evil" })),
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN,
		},
		"expired": {
			token: f.sign(t, claims(func(c *auth.AccessClaims) {
				c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-20 * time.Minute))
				c.NotBefore = c.IssuedAt
				c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-10 * time.Minute))
			})),
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED,
		},
		"not yet valid": {
			token:  f.sign(t, claims(func(c *auth.AccessClaims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(5 * time.Minute)) })),
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN,
		},
		"lives longer than 15 minutes": {
			token:  f.sign(t, claims(func(c *auth.AccessClaims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(24 * time.Hour)) })),
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN,
		},
		"no expiry": {
			token:  f.sign(t, claims(func(c *auth.AccessClaims) { c.ExpiresAt = nil })),
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN,
		},
		"no session": {
			token:  f.sign(t, claims(func(c *auth.AccessClaims) { c.SessionID = "" })),
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN,
		},
		"unknown kid": {
			token: func() string {
				tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims(nil))
				tok.Header["kid"] = "k9"
				s, _ := tok.SignedString(f.priv)
				return s
			}(),
			reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN,
		},
		"garbage":      {token: "not.a.jwt", reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED},
		"two segments": {token: parts[0] + "." + parts[1], reason: errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p, err := f.v.Verify(context.Background(), tc.token)
			require.Nil(t, p)
			require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
			require.Equal(t, tc.reason, apierr.ReasonOf(err), "%v", err)
		})
	}
}

func TestJWTRevokedSession(t *testing.T) {
	t.Parallel()
	f := newJWTFixture(t)
	tok := f.sign(t, claims(nil))
	_, err := f.v.Verify(context.Background(), tok) // now cached
	require.NoError(t, err)
	f.revoked.Revoke("0190a2b4-0000-7000-8000-0000000000ee", time.Now().Add(time.Hour))
	_, err = f.v.Verify(context.Background(), tok)
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED, apierr.ReasonOf(err))

	// The same through a session.revoked event.
	other := f.sign(t, claims(func(c *auth.AccessClaims) { c.SessionID = "0190a2b4-0000-7000-8000-0000000000ff" }))
	_, err = f.v.Verify(context.Background(), other)
	require.NoError(t, err)
	ev, err := bus.NewEvent("0190a2b4-0000-7000-8000-0000000000aa", auth.SessionRevokedEvent, "manushya/identity",
		"0190a2b4-0000-7000-8000-0000000000ff", map[string]any{"id": "0190a2b4-0000-7000-8000-0000000000ff", "revoke_time": time.Now()})
	require.NoError(t, err)
	require.NoError(t, f.revoked.Apply(ev))
	_, err = f.v.Verify(context.Background(), other)
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED, apierr.ReasonOf(err))
}

func TestJWTCachedTokenStillExpires(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	clock := func() time.Time { return now }
	v, err := auth.NewJWTVerifier(auth.JWTVerifierConfig{Keys: auth.KeySet{"k1": pub}, Issuer: "manushya", Audience: "manushya", Now: clock})
	require.NoError(t, err)
	f := &jwtFixture{priv: priv}
	tok := f.sign(t, claims(nil))
	_, err = v.Verify(context.Background(), tok)
	require.NoError(t, err)
	now = now.Add(11 * time.Minute)
	_, err = v.Verify(context.Background(), tok)
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, apierr.ReasonOf(err))
}

// BenchmarkJWTVerify measures verification plus principal: "cached" is the common
// case of a token presented again (expiry and revocation still checked), "cold"
// a token seen for the first time (Ed25519 signature check).
func BenchmarkJWTVerify(b *testing.B) {
	f := newJWTFixture(b)
	for i := range 1000 {
		f.revoked.Revoke("revoked-"+string(rune('a'+i%26))+string(rune(i)), time.Now().Add(time.Hour))
	}
	tok := f.sign(b, claims(nil))
	ctx := context.Background()
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := f.v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("cold", func(b *testing.B) {
		cold, err := auth.NewJWTVerifier(auth.JWTVerifierConfig{
			Keys: auth.KeySet{"k1": f.pub}, Issuer: "manushya", Audience: "manushya", Revoked: f.revoked, CacheSize: -1,
		})
		require.NoError(b, err)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cold.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A raised token generation refuses the identity's older tokens, cached or not, and
// says "expired" (a refresh fixes it); other identities and newer tokens pass.
func TestJWTVerifyTokenGeneration(t *testing.T) {
	t.Parallel()
	f := newJWTFixture(t)
	ctx := context.Background()
	old := f.sign(t, claims(func(c *auth.AccessClaims) { c.Generation = 2 }))
	cachedOld := f.sign(t, claims(func(c *auth.AccessClaims) { c.Generation = 2; c.ID = "jti-2" }))
	_, err := f.v.Verify(ctx, cachedOld)
	require.NoError(t, err)
	other := f.sign(t, claims(func(c *auth.AccessClaims) { c.Subject = "0190a2b4-0000-7000-8000-000000000002" }))

	f.revoked.RaiseGeneration("0190a2b4-0000-7000-8000-000000000001", 3, time.Now().Add(time.Hour))
	for _, tok := range []string{old, cachedOld} {
		_, err = f.v.Verify(ctx, tok)
		require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, apierr.ReasonOf(err))
	}
	_, err = f.v.Verify(ctx, other)
	require.NoError(t, err)
	_, err = f.v.Verify(ctx, f.sign(t, claims(func(c *auth.AccessClaims) { c.Generation = 3; c.ID = "jti-3" })))
	require.NoError(t, err)

	// The same from an event on the bus, as other processes learn it.
	r := auth.NewRevocations()
	data, err := json.Marshal(auth.TokensRevoked("id-1", 4, time.Now()))
	require.NoError(t, err)
	ev, err := bus.NewEvent("0190a2b4-0000-7000-8000-0000000000aa", auth.TokensRevokedEvent, "manushya/identity", "id-1", json.RawMessage(data))
	require.NoError(t, err)
	require.NoError(t, r.Apply(ev))
	require.True(t, r.IsStale("id-1", 3))
	require.False(t, r.IsStale("id-1", 4))
	require.False(t, r.IsStale("id-2", 0))
}

// An MFA-enrollment token (its own audience) carries only the enrollment scopes
// and is refused outside the enrollment methods; no gRPC method means refused.
func TestJWTVerifyMFAEnrollmentToken(t *testing.T) {
	t.Parallel()
	f := newJWTFixture(t)
	tok := f.sign(t, claims(func(c *auth.AccessClaims) {
		c.Audience = jwt.ClaimStrings{auth.MFAEnrollmentAudience("manushya")}
		c.Scope = "write"
	}))
	for range 2 { // first sight, then from the cache
		_, err := f.v.Verify(context.Background(), tok)
		require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_MFA_REQUIRED, apierr.ReasonOf(err))
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	other, err := auth.NewJWTVerifier(auth.JWTVerifierConfig{
		Keys: auth.KeySet{"k1": f.pub}, Issuer: "manushya", Audience: "another",
	})
	require.NoError(t, err)
	_, err = other.Verify(context.Background(), tok)
	require.Error(t, err)
}
