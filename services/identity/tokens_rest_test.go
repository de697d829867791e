package identity_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/manushya-ai/manushya/gateway"
	"github.com/manushya-ai/manushya/services/identity"
)

// TestTokensREST runs the token and session flows as a client would with curl:
// an agent created with tokens, refresh, reuse detection, login, sessions, revoke,
// logout and the published keys.
func TestTokensREST(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{cfg: identity.TokenConfig{RefreshGrace: time.Nanosecond}})
	gw, err := gateway.New(context.Background(), gateway.Config{
		Upstreams:   map[string]string{gateway.UpstreamIdentity: b.conn.Target()},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = gw.Close() })
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)

	call := func(method, path, header, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "curl/8.5.0")
		if k, v, ok := strings.Cut(header, ": "); ok {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		out := map[string]any{}
		require.NoError(t, json.Unmarshal(raw, &out), string(raw))
		return resp.StatusCode, out
	}
	reason := func(body map[string]any) string {
		details, _ := body["details"].([]any)
		for _, d := range details {
			if m, ok := d.(map[string]any); ok && m["reason"] != nil {
				return m["reason"].(string)
			}
		}
		return ""
	}
	key := "X-API-Key: " + b.adminA

	code, created := call("POST", "/v1/identity/", key, `{"external_id":"agent-7","role":"agent","kind":"IDENTITY_KIND_AGENT","issue_token":true}`)
	require.Equal(t, http.StatusOK, code, created)
	toks := created["tokens"].(map[string]any)
	access, refresh := toks["access_token"].(string), toks["refresh_token"].(string)
	require.Equal(t, "Bearer", toks["token_type"])

	code, me := call("GET", "/v1/identity/me", "Authorization: Bearer "+access, "")
	require.Equal(t, http.StatusOK, code, me)
	require.Equal(t, "agent-7", me["identity"].(map[string]any)["external_id"])

	code, refreshed := call("POST", "/v1/sessions/refresh", "", `{"refresh_token":"`+refresh+`"}`)
	require.Equal(t, http.StatusOK, code, refreshed)
	next := refreshed["tokens"].(map[string]any)["refresh_token"].(string)
	require.NotEqual(t, refresh, next)

	code, reused := call("POST", "/v1/sessions/refresh/", "", `{"refresh_token":"`+refresh+`"}`)
	require.Equal(t, http.StatusUnauthorized, code, reused)
	require.Equal(t, "ERROR_REASON_CREDENTIALS_REVOKED", reason(reused))
	code, after := call("POST", "/v1/sessions/refresh", "", `{"refresh_token":"`+next+`"}`)
	require.Equal(t, http.StatusUnauthorized, code, after)

	// Login with a password set by the admin, then sessions and revocation.
	code, created = call("POST", "/v1/identity/", key, `{"external_id":"user@example.com","role":"user","claims":{"name":"John Doe"}}`)
	require.Equal(t, http.StatusOK, code, created)
	id := created["identity"].(map[string]any)["id"].(string)
	code, out := call("POST", "/v1/identity/"+id+"/password", key, `{"new_password":"`+testPassword+`"}`)
	require.Equal(t, http.StatusOK, code, out)
	code, out = call("POST", "/v1/auth/login", "", `{"tenant":"tenant-a","identifier":"user@example.com","password":"wrong password here"}`)
	require.Equal(t, http.StatusUnauthorized, code, out)
	require.Equal(t, "ERROR_REASON_LOGIN_FAILED", reason(out))
	code, login := call("POST", "/v1/auth/login", "", `{"tenant":"tenant-a","identifier":"user@example.com","password":"`+testPassword+`","device_name":"Phone"}`)
	require.Equal(t, http.StatusOK, code, login)
	userAccess := login["tokens"].(map[string]any)["access_token"].(string)
	sid := login["tokens"].(map[string]any)["session_id"].(string)

	code, list := call("GET", "/v1/sessions/", "Authorization: Bearer "+userAccess, "")
	require.Equal(t, http.StatusOK, code, list)
	sessions := list["sessions"].([]any)
	require.Len(t, sessions, 1)
	s := sessions[0].(map[string]any)
	require.Equal(t, "curl/8.5.0", s["user_agent"])
	require.Equal(t, "Phone", s["device_name"])
	require.Equal(t, true, s["current"])

	code, out = call("DELETE", "/v1/sessions/"+sid, key, "")
	require.Equal(t, http.StatusOK, code, out)
	code, out = call("GET", "/v1/identity/me", "Authorization: Bearer "+userAccess, "")
	require.Equal(t, http.StatusUnauthorized, code, out)
	require.Equal(t, "ERROR_REASON_CREDENTIALS_REVOKED", reason(out))

	code, login = call("POST", "/v1/auth/login/", "", `{"tenant":"`+b.tenantA+`","identifier":"user@example.com","password":"`+testPassword+`"}`)
	require.Equal(t, http.StatusOK, code, login)
	userAccess = login["tokens"].(map[string]any)["access_token"].(string)
	code, out = call("POST", "/v1/auth/logout", "Authorization: Bearer "+userAccess, `{}`)
	require.Equal(t, http.StatusOK, code, out)
	code, _ = call("GET", "/v1/identity/me", "Authorization: Bearer "+userAccess, "")
	require.Equal(t, http.StatusUnauthorized, code)

	code, jwks := call("GET", "/.well-known/jwks.json", "", "")
	require.Equal(t, http.StatusOK, code, jwks)
	k := jwks["keys"].([]any)[0].(map[string]any)
	require.Equal(t, "OKP", k["kty"])
	require.Equal(t, "Ed25519", k["crv"])
	require.Equal(t, "EdDSA", k["alg"])
}
