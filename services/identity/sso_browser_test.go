package identity_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/audit"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// TestSSOLoginBoundToBrowser: a sign-in finishes only in the browser that started
// it. The callback URL of a sign-in (code and state), opened without its cookie or
// with another browser's, is refused and creates nothing (login CSRF); the
// browser that started it then still finishes it.
func TestSSOLoginBoundToBrowser(t *testing.T) {
	t.Parallel()
	b := setupSSO(t)
	admin := b.admin(t)
	b.provider(t, "acme", nil)
	before := b.countIdentities(t, admin)

	// The start sets the binding cookie: HttpOnly, SameSite=Lax, only for the
	// callback path, short-lived; not Secure, since this gateway is plain http.
	start, body := get(t, b.browser, b.gwURL+"/v1/sso/login/acme?tenant=tenant-a")
	require.Equal(t, http.StatusFound, start.StatusCode, string(body))
	var binding *http.Cookie
	for _, c := range start.Cookies() {
		if c.Name == "manushya_sso" {
			binding = c
		}
	}
	require.NotNil(t, binding, "Set-Cookie: %v", start.Header.Values("Set-Cookie"))
	require.True(t, binding.HttpOnly)
	require.Equal(t, http.SameSiteLaxMode, binding.SameSite)
	require.Equal(t, "/v1/sso/callback/", binding.Path)
	require.Equal(t, 600, binding.MaxAge)
	require.False(t, binding.Secure)
	require.GreaterOrEqual(t, len(binding.Value), 43)
	state := mustQuery(t, start.Header.Get("Location")).Get("state")
	require.NotContains(t, start.Header.Get("Location"), binding.Value, "the cookie's value travels nowhere else")

	// The provider authenticates the person and sends the browser back.
	b.op.QueueUser(&oidcUser{sub: "bound-1", email: "bound@example.com", verified: true})
	resp, body := get(t, b.browser, start.Header.Get("Location"))
	require.Equal(t, http.StatusFound, resp.StatusCode, string(body))
	callback := resp.Header.Get("Location")
	require.Equal(t, state, mustQuery(t, callback).Get("state"))

	refusedHere := func(t *testing.T, c *http.Client, cookie string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, callback, nil)
		require.NoError(t, err)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		st, code, msg := restError(t, resp, body)
		require.Equal(t, http.StatusUnauthorized, st, msg)
		require.Equal(t, codes.Unauthenticated, code)
		require.Contains(t, msg, "another browser")
		require.Equal(t, before, b.countIdentities(t, admin), "nothing is created")
	}
	// Another browser (a victim lured to the attacker's callback URL): no cookie.
	refusedHere(t, noFollow, "")
	// A browser with a sign-in of its own: another cookie.
	other, err := cookiejar.New(nil)
	require.NoError(t, err)
	otherBrowser := &http.Client{Jar: other, Timeout: 10 * time.Second, CheckRedirect: noFollow.CheckRedirect}
	otherStart, _ := get(t, otherBrowser, b.gwURL+"/v1/sso/login/acme?tenant=tenant-a")
	require.Equal(t, http.StatusFound, otherStart.StatusCode)
	refusedHere(t, otherBrowser, "")
	// A forged cookie.
	refusedHere(t, noFollow, "manushya_sso="+strings.Repeat("A", 43))
	require.Equal(t, 3, countEvents(t, admin, "auth.login.failed"), "each refusal is recorded")

	// The browser that started the sign-in finishes it: the refusals did not use up
	// its state. The cookie is cleared once used.
	resp, body = get(t, b.browser, callback)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"access_token"`)
	require.Equal(t, before+1, b.countIdentities(t, admin))
	cleared := false
	for _, c := range resp.Cookies() {
		cleared = cleared || (c.Name == "manushya_sso" && c.MaxAge < 0)
	}
	require.True(t, cleared, "Set-Cookie: %v", resp.Header.Values("Set-Cookie"))
	u, err := url.Parse(b.gwURL + "/v1/sso/callback/acme")
	require.NoError(t, err)
	require.Empty(t, b.browser.Jar.Cookies(u))
}

// TestSSORoleSync: with a roles claim mapped, the identity's roles follow the
// provider's groups at every sign-in, within the provider's allowed_roles; roles
// the provider does not manage stay; a role taken away retires live tokens; the
// change is an event and an audit record.
func TestSSORoleSync(t *testing.T) {
	t.Parallel()
	b := setupSSO(t)
	admin := b.admin(t)
	ctx := context.Background()
	p := b.provider(t, "acme", func(r *identityv1.CreateSsoProviderRequest) {
		r.ClaimMapping = &identityv1.SsoClaimMapping{Roles: "groups"}
		r.AllowedRoles = []string{"support", "billing", "auditor", "billing"}
	})
	require.Equal(t, []string{"support", "billing", "auditor"}, p.GetAllowedRoles())

	type signedIn struct {
		Identity struct {
			ID    string   `json:"id"`
			Role  string   `json:"role"`
			Roles []string `json:"roles"`
		} `json:"identity"`
		Tokens struct {
			AccessToken string `json:"access_token"`
		} `json:"tokens"`
	}
	signIn := func(t *testing.T, groups ...string) signedIn {
		t.Helper()
		resp, body := get(t, b.browser, b.toCallback(t, "/v1/sso/login/acme?tenant=tenant-a",
			&oidcUser{sub: "sync-1", email: "sync@example.com", verified: true, groups: groups}))
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		var out signedIn
		require.NoError(t, json.Unmarshal(body, &out), string(body))
		return out
	}
	me := func(token string) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.gwURL+"/v1/identity/me", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	// First sign-in (just in time): admin and unlisted groups are dropped.
	first := signIn(t, "support", "admin", "engineering")
	require.Equal(t, "user", first.Identity.Role)
	require.ElementsMatch(t, []string{"support"}, first.Identity.Roles)
	// An admin grants a role the provider does not manage.
	_, err := b.ids.UpdateIdentity(as(b.adminA), &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: first.Identity.ID, Roles: []string{"support", "ops"}},
	})
	require.NoError(t, err)
	updatesBefore := countEvents(t, admin, "identity.updated")

	// Groups change at the provider: support goes, billing and auditor come.
	second := signIn(t, "billing", "auditor")
	require.Equal(t, first.Identity.ID, second.Identity.ID)
	require.ElementsMatch(t, []string{"ops", "billing", "auditor"}, second.Identity.Roles)
	require.Equal(t, http.StatusUnauthorized, me(first.Tokens.AccessToken), "support was taken away: the old token is retired")
	require.Equal(t, http.StatusOK, me(second.Tokens.AccessToken))
	require.Equal(t, updatesBefore+1, countEvents(t, admin, "identity.updated"))
	var synced []audit.Record
	b.audit.mu.Lock()
	for _, r := range b.audit.recs {
		if r.Action == "identity.sso.roles_synced" {
			synced = append(synced, r)
		}
	}
	b.audit.mu.Unlock()
	require.Len(t, synced, 1, "the change is audited")
	require.Equal(t, first.Identity.ID, synced[0].ResourceID)
	require.Contains(t, string(synced[0].Before), `"support"`)
	require.Contains(t, string(synced[0].After), `"billing"`)

	// Same groups again: nothing changes, no event, tokens live on.
	third := signIn(t, "auditor", "billing")
	require.ElementsMatch(t, []string{"ops", "billing", "auditor"}, third.Identity.Roles)
	require.Equal(t, updatesBefore+1, countEvents(t, admin, "identity.updated"))
	require.Equal(t, http.StatusOK, me(second.Tokens.AccessToken))

	// Only additions: the live token stays valid.
	fourth := signIn(t, "auditor", "billing", "support")
	require.ElementsMatch(t, []string{"ops", "billing", "auditor", "support"}, fourth.Identity.Roles)
	require.Equal(t, http.StatusOK, me(third.Tokens.AccessToken))

	// No groups: every managed role goes, the admin's stays.
	fifth := signIn(t)
	require.ElementsMatch(t, []string{"ops"}, fifth.Identity.Roles)

	var roles []string
	require.NoError(t, admin.QueryRow(ctx, "SELECT roles FROM identity.identities WHERE id = $1", first.Identity.ID).Scan(&roles))
	require.ElementsMatch(t, []string{"ops"}, roles)

	// Admin only when listed, and only listed by an admin.
	_, userKey := b.member(t, "plain@example.com", "user")
	_, err = b.sso.CreateSsoProvider(as(userKey), &identityv1.CreateSsoProviderRequest{
		Name: "escalate", IssuerUrl: b.op.Issuer(), ClientId: "c", AllowedRoles: []string{"admin"},
	})
	require.Error(t, err)
	_, err = b.sso.CreateSsoProvider(as(b.adminA), &identityv1.CreateSsoProviderRequest{
		Name: "bad", IssuerUrl: b.op.Issuer(), ClientId: "c", AllowedRoles: []string{"not a role"},
	})
	requireField(t, err, "allowed_roles")
	b.provider(t, "admins", func(r *identityv1.CreateSsoProviderRequest) {
		r.ClaimMapping = &identityv1.SsoClaimMapping{Roles: "groups"}
		r.AllowedRoles = []string{"admin"}
	})
	resp, body := get(t, b.browser, b.toCallback(t, "/v1/sso/login/admins?tenant=tenant-a",
		&oidcUser{sub: "boss-1", email: "boss@example.com", verified: true, groups: []string{"admin", "support"}}))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"roles":["admin"]`)
}
