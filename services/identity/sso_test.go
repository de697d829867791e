package identity_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/manushya-ai/manushya/gateway"
	"github.com/manushya-ai/manushya/pkg/kv"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/identity"
)

// oidcUser is a person at the test provider whose ID token claims the test
// controls entirely, including claims that make the token invalid.
type oidcUser struct {
	sub, email, name string
	verified         bool
	groups           []string
	// override replaces or adds ID token claims (iss, aud, exp, nonce ...).
	override map[string]any
}

func (u *oidcUser) ID() string { return u.sub }

func (u *oidcUser) Userinfo([]string) ([]byte, error) {
	return json.Marshal(map[string]any{"sub": u.sub, "email": u.email, "name": u.name})
}

func (u *oidcUser) Claims(_ []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	c := jwt.MapClaims{
		"iss": base.Issuer, "sub": u.sub, "aud": []string(base.Audience), "nonce": base.Nonce,
		"iat": base.IssuedAt.Unix(), "exp": base.ExpiresAt.Unix(), "jti": base.ID,
		"email": u.email, "email_verified": u.verified, "name": u.name,
	}
	if u.groups != nil {
		c["groups"] = u.groups
	}
	for k, v := range u.override {
		c[k] = v
	}
	return c, nil
}

// ssoBundle is an identity service behind the REST gateway, a local OIDC provider
// and an application that SSO redirects back to.
type ssoBundle struct {
	*kmiBundle
	sso    identityv1.SsoServiceClient
	op     *mockoidc.MockOIDC
	gwURL  string
	appURL string
	// browser stops at every redirect, like noFollow, but keeps cookies (the
	// binding cookie of a started sign-in among them).
	browser *http.Client
	// audit receives the service's own audit records (sign-ins, role syncs).
	audit   *auditCapture
	mu      sync.Mutex
	appHits []url.Values
	// resign, when set, re-signs the ID token of the next token response with
	// another key (a forged signature).
	resign *rsa.PrivateKey
}

func setupSSO(t *testing.T) *ssoBundle {
	t.Helper()
	ctx := context.Background()
	b := &ssoBundle{kmiBundle: &kmiBundle{db: pgtest.New(t, identity.Migrations()), logs: &kmiLogBuffer{}}}
	jar, jerr := cookiejar.New(nil)
	require.NoError(t, jerr)
	b.browser = &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: noFollow.CheckRedirect}
	b.audit = &auditCapture{}

	op, err := mockoidc.NewServer(nil)
	require.NoError(t, err)
	require.NoError(t, op.AddMiddleware(b.tamperTokens))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, op.Start(ln, nil))
	t.Cleanup(func() { _ = op.Shutdown() })
	b.op = op

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.appHits = append(b.appHits, r.URL.Query())
		b.mu.Unlock()
		_, _ = io.WriteString(w, "signed in")
	}))
	t.Cleanup(app.Close)
	b.appURL = app.URL + "/sso/done"

	var gwHandler http.Handler
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gwHandler.ServeHTTP(w, r) }))
	t.Cleanup(gw.Close)
	b.gwURL = gw.URL

	store, err := kv.Open(ctx, "redis://127.0.0.1:6379/0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	mod, err := identity.New(identity.Config{
		APIKeyPepper: pepper,
		SSO:          identity.SSOConfig{CallbackBaseURL: gw.URL, AllowedAddresses: []string{"127.0.0.0/8"}},
	}, identity.Deps{Pool: b.db.Pool, KV: store, Logger: slog.New(slog.NewJSONHandler(b.logs, nil)), Audit: b.audit})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	require.NoError(t, mod.Start(runCtx))
	t.Cleanup(func() {
		cancel()
		stopCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = mod.Stop(stopCtx)
	})
	b.conn = serveModule(t, mod)
	b.svc = mod.Service()
	b.ids = identityv1.NewIdentityServiceClient(b.conn)
	b.invites = identityv1.NewInvitationServiceClient(b.conn)
	b.sso = identityv1.NewSsoServiceClient(b.conn)

	g, err := gateway.New(ctx, gateway.Config{
		Upstreams:   map[string]string{gateway.UpstreamIdentity: b.conn.Target()},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	gwHandler = g.Handler()

	a, err := b.svc.Bootstrap(ctx, "tenant-a", "Tenant A")
	require.NoError(t, err)
	bb, err := b.svc.Bootstrap(ctx, "tenant-b", "Tenant B")
	require.NoError(t, err)
	b.adminA, b.tenantA, b.adminB, b.tenantB = a.APIKey, a.TenantID, bb.APIKey, bb.TenantID
	return b
}

// tamperTokens re-signs the ID token of a token response when b.resign is set.
func (b *ssoBundle) tamperTokens(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		key := b.resign
		b.mu.Unlock()
		if r.URL.Path != mockoidc.TokenEndpoint || key == nil {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var body map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body["id_token"] == nil {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		parsed, _, err := jwt.NewParser().ParseUnverified(body["id_token"].(string), jwt.MapClaims{})
		if err == nil {
			forged := jwt.NewWithClaims(jwt.SigningMethodRS256, parsed.Claims)
			forged.Header["kid"] = parsed.Header["kid"] // the provider's key id, another key
			body["id_token"], err = forged.SignedString(key)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	})
}

// provider configures an SSO provider of tenant A pointing at the local issuer.
func (b *ssoBundle) provider(t *testing.T, name string, edit func(*identityv1.CreateSsoProviderRequest)) *identityv1.SsoProvider {
	t.Helper()
	cfg := b.op.Config()
	req := &identityv1.CreateSsoProviderRequest{
		Name: name, DisplayName: "Sign in with " + name, IssuerUrl: cfg.Issuer,
		ClientId: cfg.ClientID, ClientSecret: cfg.ClientSecret, JitCreate: true,
	}
	if edit != nil {
		edit(req)
	}
	resp, err := b.sso.CreateSsoProvider(as(b.adminA), req)
	require.NoError(t, err)
	return resp.GetSsoProvider()
}

// noFollow is a browser that stops at every redirect, so a test can look at and
// tamper with each step.
var noFollow = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// toCallback starts a sign-in at the gateway and lets the provider authenticate
// user, returning the callback URL the provider sends the browser to.
func (b *ssoBundle) toCallback(t *testing.T, loginPath string, user *oidcUser) string {
	t.Helper()
	resp, body := get(t, b.browser, b.gwURL+loginPath)
	require.Equal(t, http.StatusFound, resp.StatusCode, string(body))
	authorize := resp.Header.Get("Location")
	u, err := url.Parse(authorize)
	require.NoError(t, err)
	q := u.Query()
	require.Equal(t, "S256", q.Get("code_challenge_method"))
	require.NotEmpty(t, q.Get("code_challenge"))
	require.NotEmpty(t, q.Get("nonce"))
	require.NotEmpty(t, q.Get("state"))
	require.Equal(t, b.gwURL+"/v1/sso/callback/"+strings.TrimPrefix(strings.Split(loginPath, "?")[0], "/v1/sso/login/"), q.Get("redirect_uri"))
	b.op.QueueUser(user)
	resp, body = get(t, b.browser, authorize)
	require.Equal(t, http.StatusFound, resp.StatusCode, string(body))
	return resp.Header.Get("Location")
}

// restError decodes the gateway's error body.
func restError(t *testing.T, resp *http.Response, body []byte) (int, codes.Code, string) {
	t.Helper()
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	return resp.StatusCode, codes.Code(e.Code), e.Message
}

func (b *ssoBundle) countIdentities(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM identity.identities").Scan(&n))
	return n
}

func countEvents(t *testing.T, conn *pgx.Conn, suffix string) int {
	t.Helper()
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.' || $1", suffix).Scan(&n))
	return n
}

// TestSSOBrowserSignIn signs a new person in the way a browser would: follow
// every redirect, with a cookie jar, through the REST gateway, the provider and
// back, then uses the tokens.
func TestSSOBrowserSignIn(t *testing.T) {
	t.Parallel()
	b := setupSSO(t)
	admin := b.admin(t)
	b.provider(t, "acme", func(r *identityv1.CreateSsoProviderRequest) {
		r.Scopes = []string{"openid", "email", "profile", "groups"}
		r.ClaimMapping = &identityv1.SsoClaimMapping{Roles: "groups"}
		r.AllowedEmailDomains = []string{"Example.com"}
	})
	before := b.countIdentities(t, admin)

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	b.op.QueueUser(&oidcUser{sub: "u-1", email: "Jane@Example.com", name: "Jane Doe", verified: true, groups: []string{"readonly", "admin", "support"}})
	resp, body := get(t, browser, b.gwURL+"/v1/sso/login/acme?tenant=tenant-a")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, resp.Request.URL.Path, "/v1/sso/callback/acme")
	var out struct {
		Identity struct {
			ID         string         `json:"id"`
			ExternalID string         `json:"external_id"`
			Role       string         `json:"role"`
			Roles      []string       `json:"roles"`
			Claims     map[string]any `json:"claims"`
		} `json:"identity"`
		Tokens struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		} `json:"tokens"`
		Created bool `json:"identity_created"`
	}
	require.NoError(t, json.Unmarshal(body, &out), string(body))
	require.True(t, out.Created)
	require.Equal(t, "jane@example.com", out.Identity.ExternalID)
	require.Equal(t, "user", out.Identity.Role)
	// "admin" ranks above the provider's default role and is dropped.
	require.ElementsMatch(t, []string{"readonly", "support"}, out.Identity.Roles)
	require.Equal(t, "Jane Doe", out.Identity.Claims["name"])
	require.Equal(t, before+1, b.countIdentities(t, admin))

	// The access token works as any other.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.gwURL+"/v1/identity/me", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+out.Tokens.AccessToken)
	me, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	meBody, _ := io.ReadAll(me.Body)
	_ = me.Body.Close()
	require.Equal(t, http.StatusOK, me.StatusCode, string(meBody))
	require.Contains(t, string(meBody), out.Identity.ID)
	var method string
	require.NoError(t, admin.QueryRow(context.Background(), "SELECT auth_method FROM identity.sessions WHERE identity_id = $1", out.Identity.ID).Scan(&method))
	require.Equal(t, "sso", method)
	require.Equal(t, 1, countEvents(t, admin, "auth.login.succeeded"))

	// A second sign-in of the same account finds the linked identity.
	b.op.QueueUser(&oidcUser{sub: "u-1", email: "jane@example.com", verified: true})
	resp, body = get(t, browser, b.gwURL+"/v1/sso/login/acme?tenant=tenant-a")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.NoError(t, json.Unmarshal(body, &out))
	require.False(t, out.Created)
	require.Equal(t, before+1, b.countIdentities(t, admin))

	// An address outside the allowed domains is refused.
	b.op.QueueUser(&oidcUser{sub: "u-2", email: "eve@elsewhere.org", verified: true})
	resp, body = get(t, browser, b.gwURL+"/v1/sso/login/acme?tenant=tenant-a")
	st, code, msg := restError(t, resp, body)
	require.Equal(t, http.StatusForbidden, st, msg)
	require.Equal(t, codes.PermissionDenied, code)
	require.Contains(t, msg, "domain")
	require.Equal(t, before+1, b.countIdentities(t, admin))
	require.Equal(t, 1, countEvents(t, admin, "auth.login.failed"))
}

// TestSSOAppRedirectAndExchange: a provider with an application URL sends the
// browser there with a one-time code, which the application exchanges once.
func TestSSOAppRedirectAndExchange(t *testing.T) {
	t.Parallel()
	b := setupSSO(t)
	admin := b.admin(t)
	b.provider(t, "okta", func(r *identityv1.CreateSsoProviderRequest) { r.RedirectUrls = []string{b.appURL} })

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	b.op.QueueUser(&oidcUser{sub: "app-1", email: "sam@example.com", verified: true})
	resp, body := get(t, browser, b.gwURL+"/v1/sso/login/okta?tenant=tenant-a")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "signed in", string(body))
	b.mu.Lock()
	require.Len(t, b.appHits, 1)
	hit := b.appHits[0]
	b.mu.Unlock()
	code := hit.Get("code")
	require.True(t, strings.HasPrefix(code, "msc_"), hit)
	require.NotEmpty(t, hit.Get("state"))

	// The code is stored only as a hash.
	var leaked int
	require.NoError(t, admin.QueryRow(context.Background(), "SELECT count(*) FROM identity.outbox WHERE position(convert_to($1, 'UTF8') IN payload) > 0", code).Scan(&leaked))
	require.Zero(t, leaked)

	ex := func() (*http.Response, []byte) {
		resp, err := http.Post(b.gwURL+"/v1/sso/exchange", "application/json", strings.NewReader(`{"code":"`+code+`"}`))
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	resp, body = ex()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"access_token"`)
	require.Contains(t, string(body), `"identity_created":true`)
	// Single use.
	resp, body = ex()
	st, c, msg := restError(t, resp, body)
	require.Equal(t, http.StatusUnauthorized, st)
	require.Equal(t, codes.Unauthenticated, c)
	require.Contains(t, msg, "already used")

	// A redirect_uri that is not configured is refused, naming the field.
	resp, body = get(t, noFollow, b.gwURL+"/v1/sso/login/okta?tenant=tenant-a&redirect_uri="+url.QueryEscape("https://evil.example/steal"))
	st, c, msg = restError(t, resp, body)
	require.Equal(t, http.StatusBadRequest, st, msg)
	require.Equal(t, codes.InvalidArgument, c)
	require.Contains(t, msg, "redirect_uri")

	// The provider's own error goes back to the application.
	resp, _ = get(t, b.browser, b.gwURL+"/v1/sso/login/okta?tenant=tenant-a")
	state := mustQuery(t, resp.Header.Get("Location")).Get("state")
	resp, _ = get(t, b.browser, b.gwURL+"/v1/sso/callback/okta?error=access_denied&error_description=no&state="+url.QueryEscape(state))
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc := mustQuery(t, resp.Header.Get("Location"))
	require.Equal(t, "access_denied", loc.Get("error"))
	require.Empty(t, loc.Get("code"))
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Query()
}

// TestSSOAttacks: every forged or replayed step is refused with a clear error,
// and nothing is created.
func TestSSOAttacks(t *testing.T) {
	t.Parallel()
	b := setupSSO(t)
	admin := b.admin(t)
	b.provider(t, "acme", nil)
	login := "/v1/sso/login/acme?tenant=tenant-a"
	before := b.countIdentities(t, admin)

	refused := func(t *testing.T, callback, wantMsg string) {
		t.Helper()
		resp, body := get(t, b.browser, callback)
		st, code, msg := restError(t, resp, body)
		require.Equal(t, http.StatusUnauthorized, st, msg)
		require.Equal(t, codes.Unauthenticated, code)
		require.Contains(t, msg, wantMsg)
		require.Equal(t, before, b.countIdentities(t, admin), "nothing is created")
	}
	user := func(override map[string]any) *oidcUser {
		return &oidcUser{sub: "victim", email: "victim@example.com", verified: true, override: override}
	}

	t.Run("missing state", func(t *testing.T) {
		resp, body := get(t, noFollow, b.gwURL+"/v1/sso/callback/acme?code=abc")
		st, code, msg := restError(t, resp, body)
		require.Equal(t, http.StatusBadRequest, st)
		require.Equal(t, codes.InvalidArgument, code)
		require.Contains(t, msg, "state")
	})
	t.Run("forged state", func(t *testing.T) {
		cb := b.toCallback(t, login, user(nil))
		q := mustQuery(t, cb)
		refused(t, b.gwURL+"/v1/sso/callback/acme?code="+q.Get("code")+"&state=forged-"+q.Get("state"), "state is unknown")
	})
	t.Run("replayed code", func(t *testing.T) {
		cb := b.toCallback(t, login, &oidcUser{sub: "replay", email: "replay@example.com", verified: true})
		resp, body := get(t, b.browser, cb)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		before++ // the first use signs in (JIT creates the identity)
		refused(t, cb, "state is unknown, expired or already used")
		// The same code under a fresh state: the provider refuses it.
		fresh := mustQuery(t, b.toCallback(t, login, user(nil))).Get("state")
		refused(t, b.gwURL+"/v1/sso/callback/acme?code="+mustQuery(t, cb).Get("code")+"&state="+url.QueryEscape(fresh), "refused the code")
	})
	t.Run("other issuer", func(t *testing.T) {
		refused(t, b.toCallback(t, login, user(map[string]any{"iss": "https://evil.example"})), "another issuer")
	})
	t.Run("other audience", func(t *testing.T) {
		refused(t, b.toCallback(t, login, user(map[string]any{"aud": "someone-else"})), "another client")
	})
	t.Run("expired token", func(t *testing.T) {
		past := time.Now().Add(-time.Hour)
		refused(t, b.toCallback(t, login, user(map[string]any{"exp": past.Unix(), "iat": past.Add(-time.Minute).Unix()})), "expired")
	})
	t.Run("wrong nonce", func(t *testing.T) {
		refused(t, b.toCallback(t, login, user(map[string]any{"nonce": "not-this-one"})), "nonce")
	})
	t.Run("bad signature", func(t *testing.T) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		cb := b.toCallback(t, login, user(nil))
		b.mu.Lock()
		b.resign = key
		b.mu.Unlock()
		defer func() { b.mu.Lock(); b.resign = nil; b.mu.Unlock() }()
		refused(t, cb, "signature")
	})
	t.Run("unverified email", func(t *testing.T) {
		refused(t, b.toCallback(t, login, &oidcUser{sub: "unverified", email: "new@example.com", verified: false}), "not verified")
	})
	t.Run("callback of another provider", func(t *testing.T) {
		q := mustQuery(t, b.toCallback(t, login, user(nil)))
		refused(t, b.gwURL+"/v1/sso/callback/other?code="+q.Get("code")+"&state="+url.QueryEscape(q.Get("state")), "another provider")
	})
	require.GreaterOrEqual(t, countEvents(t, admin, "auth.login.failed"), 8)
}

// TestSSOLinking: an existing identity is linked only through an email address the
// provider verified; an unverified claim of the same address never reaches it.
func TestSSOLinking(t *testing.T) {
	t.Parallel()
	b := setupSSO(t)
	admin := b.admin(t)
	existing, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{ExternalId: "boss@example.com", Role: "admin"})
	require.NoError(t, err)
	b.provider(t, "loose", func(r *identityv1.CreateSsoProviderRequest) { r.AllowUnverifiedEmail = true })
	b.provider(t, "nojit", func(r *identityv1.CreateSsoProviderRequest) { r.JitCreate = false })
	before := b.countIdentities(t, admin)

	// Unverified, on a provider that accepts unverified addresses: the existing
	// identity is not taken over; creating a second one with its name fails.
	resp, body := get(t, b.browser, b.toCallback(t, "/v1/sso/login/loose?tenant=tenant-a", &oidcUser{sub: "attacker", email: "boss@example.com"}))
	st, code, msg := restError(t, resp, body)
	require.Equal(t, http.StatusConflict, st, msg)
	require.Equal(t, codes.AlreadyExists, code)
	require.Equal(t, before, b.countIdentities(t, admin))

	// Verified, on a provider without JIT: linked to the existing identity.
	resp, body = get(t, b.browser, b.toCallback(t, "/v1/sso/login/nojit?tenant=tenant-a", &oidcUser{sub: "boss-sub", email: "BOSS@example.com", verified: true}))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), existing.GetIdentity().GetId())
	require.Equal(t, before, b.countIdentities(t, admin))

	// Without JIT, an unknown account is refused.
	resp, body = get(t, b.browser, b.toCallback(t, "/v1/sso/login/nojit?tenant=tenant-a", &oidcUser{sub: "stranger", email: "stranger@example.com", verified: true}))
	st, _, msg = restError(t, resp, body)
	require.Equal(t, http.StatusForbidden, st, msg)
	require.Contains(t, msg, "does not create identities")
	require.Equal(t, before, b.countIdentities(t, admin))
}

// TestSSOInvitation: an invitation is accepted by signing in with an account whose
// verified email is the invited one.
func TestSSOInvitation(t *testing.T) {
	t.Parallel()
	b := setupSSO(t)
	admin := b.admin(t)
	b.provider(t, "acme", func(r *identityv1.CreateSsoProviderRequest) { r.JitCreate = false })
	inv, err := b.invites.CreateInvitation(as(b.adminA), &identityv1.CreateInvitationRequest{Email: "new.hire@example.com", Role: "agent", SkipEmail: true})
	require.NoError(t, err)
	login := "/v1/sso/login/acme?tenant=tenant-a&invitation_token=" + url.QueryEscape(inv.GetToken())
	val, err := b.invites.ValidateInvitation(context.Background(), &identityv1.ValidateInvitationRequest{Token: inv.GetToken()})
	require.NoError(t, err)
	require.Equal(t, []string{"acme"}, val.GetSsoProviders(), "the invitee is shown the ways to sign in")
	before := b.countIdentities(t, admin)

	// Another address cannot use it.
	resp, body := get(t, b.browser, b.toCallback(t, login, &oidcUser{sub: "other", email: "other@example.com", verified: true}))
	st, _, msg := restError(t, resp, body)
	require.Equal(t, http.StatusForbidden, st, msg)
	require.Contains(t, msg, "invitation")
	require.Equal(t, before, b.countIdentities(t, admin))

	resp, body = get(t, b.browser, b.toCallback(t, login, &oidcUser{sub: "hire", email: "new.hire@example.com", verified: true}))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"role":"agent"`)
	require.Equal(t, before+1, b.countIdentities(t, admin))
	got, err := b.invites.GetInvitation(as(b.adminA), &identityv1.GetInvitationRequest{Id: inv.GetInvitation().GetId()})
	require.NoError(t, err)
	require.Equal(t, identityv1.InvitationState_INVITATION_STATE_ACCEPTED, got.GetInvitation().GetState())

	// Used up: a second start is refused at once.
	resp, body = get(t, noFollow, b.gwURL+login)
	st, _, msg = restError(t, resp, body)
	require.Equal(t, http.StatusBadRequest, st, msg)
	require.Contains(t, msg, "already accepted")
}

// TestSSOProviderAdmin covers provider configuration: admin only, the secret
// sealed and never returned, tenant isolation, discovery checked, events.
func TestSSOProviderAdmin(t *testing.T) {
	t.Parallel()
	b := setupSSO(t)
	admin := b.admin(t)
	ctx := context.Background()
	p := b.provider(t, "acme", func(r *identityv1.CreateSsoProviderRequest) { r.DefaultRole = "readonly" })
	require.True(t, p.GetHasClientSecret())
	require.Empty(t, p.GetClientSecret())
	require.Equal(t, []string{"openid", "email", "profile"}, p.GetScopes())
	require.Equal(t, "readonly", p.GetDefaultRole())

	// Sealed at rest, bound to its row.
	var sealed []byte
	require.NoError(t, admin.QueryRow(ctx, "SELECT client_secret_sealed FROM identity.sso_providers WHERE id = $1", p.GetId()).Scan(&sealed))
	require.False(t, bytes.Contains(sealed, []byte(b.op.Config().ClientSecret)))
	other := b.provider(t, "other", nil)
	_, err := admin.Exec(ctx, "UPDATE identity.sso_providers SET client_secret_sealed = $1 WHERE id = $2", sealed, other.GetId())
	require.NoError(t, err)
	resp, body := get(t, b.browser, b.toCallback(t, "/v1/sso/login/other?tenant=tenant-a", &oidcUser{sub: "x", email: "x@example.com", verified: true}))
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode, "a secret moved to another row does not open: %s", body)

	// Tenant isolation: another tenant's admin sees NOT_FOUND.
	_, err = b.sso.GetSsoProvider(as(b.adminB), &identityv1.GetSsoProviderRequest{Id: p.GetId()})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = b.sso.DeleteSsoProvider(as(b.adminB), &identityv1.DeleteSsoProviderRequest{Id: p.GetId()})
	require.Equal(t, codes.NotFound, status.Code(err))
	list, err := b.sso.ListSsoProviders(as(b.adminB), &identityv1.ListSsoProvidersRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetSsoProviders())
	resp, body = get(t, noFollow, b.gwURL+"/v1/sso/login/acme?tenant=tenant-b")
	require.Equal(t, http.StatusNotFound, resp.StatusCode, string(body))

	// Admin only.
	_, userKey := b.member(t, "plain@example.com", "user")
	_, err = b.sso.ListSsoProviders(as(userKey), &identityv1.ListSsoProvidersRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	// Paging by name.
	page, err := b.sso.ListSsoProviders(as(b.adminA), &identityv1.ListSsoProvidersRequest{PageSize: 1})
	require.NoError(t, err)
	require.Equal(t, "acme", page.GetSsoProviders()[0].GetName())
	page, err = b.sso.ListSsoProviders(as(b.adminA), &identityv1.ListSsoProvidersRequest{PageSize: 1, PageToken: page.GetNextPageToken()})
	require.NoError(t, err)
	require.Equal(t, "other", page.GetSsoProviders()[0].GetName())
	require.Empty(t, page.GetNextPageToken())

	// Update: only the masked fields; the secret stays unless sent.
	up, err := b.sso.UpdateSsoProvider(as(b.adminA), &identityv1.UpdateSsoProviderRequest{
		SsoProvider: &identityv1.SsoProvider{Id: p.GetId(), JitCreate: false, DisplayName: "Acme SSO"},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"jit_create", "display_name"}},
	})
	require.NoError(t, err)
	require.False(t, up.GetSsoProvider().GetJitCreate())
	require.Equal(t, "Acme SSO", up.GetSsoProvider().GetDisplayName())
	require.True(t, up.GetSsoProvider().GetHasClientSecret())
	_, err = b.sso.UpdateSsoProvider(as(b.adminA), &identityv1.UpdateSsoProviderRequest{
		SsoProvider: &identityv1.SsoProvider{Id: p.GetId()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"tenant_id"}},
	})
	requireField(t, err, "update_mask")

	// Bad input names the field; an issuer without discovery is a failed precondition.
	_, err = b.sso.CreateSsoProvider(as(b.adminA), &identityv1.CreateSsoProviderRequest{Name: "Bad Name", ClientId: "c", IssuerUrl: b.op.Issuer()})
	requireField(t, err, "name")
	_, err = b.sso.CreateSsoProvider(as(b.adminA), &identityv1.CreateSsoProviderRequest{Name: "nodisc", ClientId: "c", IssuerUrl: b.gwURL + "/nothing"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	_, err = b.sso.CreateSsoProvider(as(b.adminA), &identityv1.CreateSsoProviderRequest{Name: "dup", ClientId: "c"})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "issuer_url is required for the generic preset")
	_, err = b.sso.CreateSsoProvider(as(b.adminA), &identityv1.CreateSsoProviderRequest{Name: "acme", ClientId: "c", IssuerUrl: b.op.Issuer()})
	require.Equal(t, codes.AlreadyExists, status.Code(err))

	_, err = b.sso.DeleteSsoProvider(as(b.adminA), &identityv1.DeleteSsoProviderRequest{Id: p.GetId()})
	require.NoError(t, err)
	_, err = b.sso.GetSsoProvider(as(b.adminA), &identityv1.GetSsoProviderRequest{Id: p.GetId()})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.Equal(t, 2, countEvents(t, admin, "sso.provider.created"))
	require.Equal(t, 1, countEvents(t, admin, "sso.provider.updated"))
	require.Equal(t, 1, countEvents(t, admin, "sso.provider.deleted"))
	var outboxSecrets int
	require.NoError(t, admin.QueryRow(ctx, "SELECT count(*) FROM identity.outbox WHERE position(convert_to($1, 'UTF8') IN payload) > 0", b.op.Config().ClientSecret).Scan(&outboxSecrets))
	require.Zero(t, outboxSecrets, "events never carry the secret")
}

func requireField(t *testing.T, err error, field string) {
	t.Helper()
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), field)
}
