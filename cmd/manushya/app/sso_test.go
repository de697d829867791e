package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"
	"github.com/stretchr/testify/require"
)

// TestSSOSignInThroughTheBinary clicks through a single sign-on the way a new user
// would, against the whole binary: an admin configures a local OIDC provider over
// REST, a browser (cookie jar, following redirects) starts at
// /v1/sso/login/{provider}, signs in at the provider and comes back with tokens
// that work on the API.
func TestSSOSignInThroughTheBinary(t *testing.T) {
	t.Parallel()
	op, err := mockoidc.Run()
	require.NoError(t, err)
	t.Cleanup(func() { _ = op.Shutdown() })

	// The callback URL must be known before the process starts: reserve a port.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	httpAddr := lis.Addr().String()
	require.NoError(t, lis.Close())

	s := newStack(t)
	a := s.start(t, "all", "MANUSHYA_HTTP_ADDR="+httpAddr,
		"MANUSHYA_SSO_CALLBACK_BASE_URL=http://"+httpAddr, "MANUSHYA_SSO_ALLOWED_ADDRESSES=127.0.0.0/8")
	boot, err := a.Identity().Service().Bootstrap(context.Background(), "sso", "SSO")
	require.NoError(t, err)
	base := "http://" + a.HTTPAddr()

	cfg := op.Config()
	body, _ := json.Marshal(map[string]any{
		"name": "local", "issuer_url": cfg.Issuer, "client_id": cfg.ClientID, "client_secret": cfg.ClientSecret, "jit_create": true,
	})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/v1/sso/providers", strings.NewReader(string(body)))
	require.NoError(t, err)
	req.Header.Set("X-API-Key", boot.APIKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	created, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(created))
	require.NotContains(t, string(created), cfg.ClientSecret)

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar, Timeout: 15 * time.Second}
	op.QueueUser(&mockoidc.MockUser{Subject: "new-user", Email: "new.user@example.com", EmailVerified: true})
	resp, err = browser.Get(base + "/v1/sso/login/local?tenant=sso")
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	var out struct {
		Identity struct {
			ExternalID string `json:"external_id"`
		} `json:"identity"`
		Tokens struct {
			AccessToken string `json:"access_token"`
		} `json:"tokens"`
		Created bool `json:"identity_created"`
	}
	require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	require.True(t, out.Created)
	require.Equal(t, "new.user@example.com", out.Identity.ExternalID)

	req, err = http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/identity/me", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+out.Tokens.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	me, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(me))
	require.Contains(t, string(me), "new.user@example.com")
}
