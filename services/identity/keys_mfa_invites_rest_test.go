package identity_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/manushya-ai/manushya/gateway"
)

// TestRESTContract runs the contract's payloads, as written, through the REST edge.
func TestRESTContract(t *testing.T) {
	t.Parallel()
	b := setupKMI(t, kmiOptions{bootstrap: true})
	gw, err := gateway.New(context.Background(), gateway.Config{
		Upstreams:   map[string]string{gateway.UpstreamIdentity: b.conn.Target()},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = gw.Close() })
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)

	call := func(method, path, key, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("X-API-Key", key)
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

	code, created := call("POST", "/v1/api-keys/", b.adminA, `{"name":"Production Key","scopes":["read","write"],"expires_in_days":365}`)
	require.Equal(t, http.StatusOK, code, created)
	key, _ := created["key"].(string)
	require.True(t, strings.HasPrefix(key, "mk_live_"), created)
	id := created["api_key"].(map[string]any)["id"].(string)

	code, test := call("POST", "/v1/api-keys/test", "", `{"key":"`+key+`"}`)
	require.Equal(t, http.StatusOK, code, test)
	require.Equal(t, true, test["valid"])
	require.Equal(t, []any{"read", "write"}, test["scopes"])
	require.NotEmpty(t, test["expire_time"])

	code, _ = call("DELETE", "/v1/api-keys/"+id, b.adminA, "")
	require.Equal(t, http.StatusOK, code)
	_, test = call("POST", "/v1/api-keys/test", "", `{"key":"`+key+`"}`)
	require.Equal(t, "API_KEY_TEST_CODE_REVOKED", test["code"])

	code, setup := call("POST", "/v1/auth/mfa/setup", b.adminA, `{}`)
	require.Equal(t, http.StatusOK, code, setup)
	png, err := base64.StdEncoding.DecodeString(setup["qr_code_png"].(string))
	require.NoError(t, err)
	require.Equal(t, "\x89PNG", string(png[:4]))
	code, verify := call("POST", "/v1/auth/mfa/verify", b.adminA, `{"token":"123456"}`)
	require.Equal(t, http.StatusBadRequest, code, "the payload is accepted; the code is wrong: %v", verify)

	code, inv := call("POST", "/v1/invitations/", b.adminA, `{"email":"rest@example.com","role":"user","skip_email":true}`)
	require.Equal(t, http.StatusOK, code, inv)
	token := inv["token"].(string)
	code, val := call("POST", "/v1/invitations/validate", "", `{"token":"`+token+`"}`)
	require.Equal(t, http.StatusOK, code, val)
	require.Equal(t, "tenant-a", val["tenant_slug"])
	code, acc := call("POST", "/v1/invitations/accept", "", `{"token":"`+token+`","password":"a long and uncommon passphrase"}`)
	require.Equal(t, http.StatusOK, code, acc)
	require.Equal(t, "rest@example.com", acc["identity"].(map[string]any)["external_id"])
}
