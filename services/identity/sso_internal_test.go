package identity

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/auth"
)

func TestProviderRolesNeverExceedWhatTheProviderAllows(t *testing.T) {
	t.Parallel()
	groups := []any{"Admin", "readonly", "support", "user", "support", "not a role!", 7}
	// Without allowed_roles: roles ranking no higher than the default role, never
	// admin; repeats and names outside the role pattern are dropped.
	user := ssoLogin{DefaultRole: "user"}
	require.Equal(t, []string{"readonly", "support", "user"}, user.providerRoles(groups))
	// With readonly as the ceiling, custom roles (ranked with user) are dropped too.
	require.Equal(t, []string{"readonly"}, ssoLogin{DefaultRole: "readonly"}.providerRoles(groups))
	// Admin is given only when allowed_roles names it, even with an admin default.
	require.Equal(t, []string{"support", "ops"}, ssoLogin{DefaultRole: "admin"}.providerRoles("support, Admin ops"))
	require.Equal(t, []string{"admin"}, ssoLogin{DefaultRole: "user", AllowedRoles: []string{"admin"}}.providerRoles(groups))
	require.Empty(t, user.providerRoles(map[string]any{"x": 1}))

	// A sign-in replaces the managed roles and keeps the others; the primary role
	// is never repeated.
	listed := ssoLogin{DefaultRole: "user", AllowedRoles: []string{"support", "billing"}}
	require.Equal(t, []string{"ops", "billing"}, listed.syncedRoles("user", []string{"ops", "support"}, []string{"billing", "user"}))
	require.Equal(t, []string{"ops"}, listed.syncedRoles("user", []string{"ops", "support", "billing"}, nil))
}

func TestMapClaimsEmailRules(t *testing.T) {
	t.Parallel()
	login := ssoLogin{DefaultRole: auth.RoleUser}
	who, err := mapClaims("s1", map[string]any{"email": "A@Example.com", "email_verified": "true", "name": "A"}, login)
	require.NoError(t, err)
	require.Equal(t, "a@example.com", who.externalID)
	require.True(t, who.emailVerified)

	_, err = mapClaims("s1", map[string]any{"email": "a@example.com"}, login)
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Contains(t, err.Error(), "not verified")

	// Allowed when the provider says so, but never marked verified.
	loose := login
	loose.AllowUnverifiedEmail = true
	who, err = mapClaims("s1", map[string]any{"email": "a@example.com", "email_verified": false}, loose)
	require.NoError(t, err)
	require.False(t, who.emailVerified)

	domains := login
	domains.AllowedEmailDomains = []string{"example.com"}
	_, err = mapClaims("s1", map[string]any{"email": "a@sub.example.com", "email_verified": true}, domains)
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = mapClaims("s1", map[string]any{}, domains)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "no email cannot pass a domain rule")

	// A custom external_id claim; numbers become their decimal form.
	custom := login
	custom.ClaimExternalID = "employee_id"
	who, err = mapClaims("s1", map[string]any{"employee_id": float64(4711)}, custom)
	require.NoError(t, err)
	require.Equal(t, "4711", who.externalID)
	_, err = mapClaims("s1", map[string]any{}, custom)
	require.ErrorContains(t, err, "employee_id")
	_, err = mapClaims("", map[string]any{"employee_id": "x"}, custom)
	require.ErrorContains(t, err, "subject")
}

func TestSSOAddressPolicy(t *testing.T) {
	t.Parallel()
	p, err := newSSOAddressPolicy([]string{"10.1.0.0/16"})
	require.NoError(t, err)
	for _, a := range []string{"127.0.0.1", "169.254.169.254", "192.168.1.1", "10.2.0.1", "::1", "100.64.0.1", "0.0.0.0"} {
		require.Error(t, p.check(netip.MustParseAddr(a)), a)
	}
	for _, a := range []string{"10.1.2.3", "8.8.8.8", "2001:4860::8888"} {
		require.NoError(t, p.check(netip.MustParseAddr(a)), a)
	}
	_, err = newSSOAddressPolicy([]string{"not-a-cidr"})
	require.Error(t, err)
}

func TestProviderSettingsPresetsAndChecks(t *testing.T) {
	t.Parallel()
	admin := &auth.Principal{Roles: []string{auth.RoleAdmin}}
	g := providerSettings{clientID: "c", domains: []string{" Example.COM "}}
	require.NoError(t, g.normalize(admin, presetGoogle))
	require.Equal(t, googleIssuer, g.issuer)
	require.Equal(t, []string{"openid", "email", "profile"}, g.scopes)
	require.Equal(t, []string{"example.com"}, g.domains)
	require.Equal(t, auth.RoleUser, g.defaultRole)

	s := providerSettings{issuer: "https://idp.example.com", scopes: []string{"email"}}
	require.NoError(t, s.normalize(admin, presetGeneric))
	require.Equal(t, []string{"openid", "email"}, s.scopes, "openid is always requested")

	bad := providerSettings{issuer: "https://idp.example.com", urls: []string{"https://app.example.com/cb#frag"}}
	require.ErrorContains(t, bad.normalize(admin, presetGeneric), "redirect_urls")
	none := providerSettings{}
	require.ErrorContains(t, none.normalize(admin, presetGeneric), "issuer_url")

	user := &auth.Principal{Roles: []string{auth.RoleUser}}
	esc := providerSettings{issuer: "https://idp.example.com", defaultRole: auth.RoleAdmin}
	require.Equal(t, codes.PermissionDenied, status.Code(esc.normalize(user, presetGeneric)))
}

func TestBrowserCookieFollowsThePublicURL(t *testing.T) {
	t.Parallel()
	path, secure := cookieSettings("https://id.acme.com/auth")
	require.Equal(t, "/auth/v1/sso/callback/", path)
	require.True(t, secure, "an https callback gets a Secure cookie")
	st := &ssoState{cookiePath: path, secureCookie: secure}
	c := st.browserCookie("v", defaultSSOStateTTL)
	require.Equal(t, `manushya_sso=v; Path=/auth/v1/sso/callback/; Max-Age=600; HttpOnly; Secure; SameSite=Lax`, c.String())
	require.Contains(t, st.browserCookie("", 0).String(), "Max-Age=0")
	path, secure = cookieSettings("http://127.0.0.1:8080")
	require.Equal(t, "/v1/sso/callback/", path)
	require.False(t, secure, "development over plain http")

	// The hash is what the state keeps; only the same value matches.
	require.Len(t, browserHash("a"), 64)
	require.NotEqual(t, browserHash("a"), browserHash("b"))
}
