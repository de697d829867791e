package webhooks_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/manushya-ai/manushya/gateway"
)

// The contract's example runs as written through the REST gateway: POST with a
// trailing slash, snake_case JSON, the secret in the response only.
func TestRESTContractExample(t *testing.T) {
	t.Parallel()
	b := setup(t)
	gw, err := gateway.New(t.Context(), gateway.Config{
		Upstreams:   map[string]string{gateway.UpstreamWebhooks: b.addr},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	rc := newReceiver(t, nil)

	call := func(method, path, body string) (int, map[string]any) {
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", "mk_"+tenantA)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		out := map[string]any{}
		_ = json.Unmarshal(raw, &out)
		return resp.StatusCode, out
	}
	code, out := call(http.MethodPost, "/v1/webhooks/", `{"name":"Identity Events Webhook","url":"`+rc.URL+`","events":["identity.created","identity.updated"]}`)
	require.Equal(t, http.StatusOK, code, out)
	hook := out["webhook"].(map[string]any)
	secret := hook["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"))
	id := hook["id"].(string)

	code, out = call(http.MethodGet, "/v1/webhooks/"+id, "")
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, out["webhook"].(map[string]any)["secret"])

	code, out = call(http.MethodPost, "/v1/webhooks/", `{"name":"x","url":"not a url","events":["identity.created"]}`)
	require.Equal(t, http.StatusBadRequest, code, out)
	require.Contains(t, strings.ToLower(toJSON(out)), "url")

	code, out = call(http.MethodGet, "/v1/webhooks/event-types", "")
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, out["event_types"])

	b.publish(t, tenantA, "identity.created", map[string]any{"external_id": "user@example.com"})
	require.Eventually(t, func() bool { return len(rc.all()) == 1 }, 10*time.Second, 10*time.Millisecond)
	verify(t, secret, rc.all()[0])
	require.Eventually(t, func() bool {
		code, out := call(http.MethodGet, "/v1/events?type=identity.created", "")
		evs, _ := out["events"].([]any)
		return code == http.StatusOK && len(evs) == 1
	}, 10*time.Second, 20*time.Millisecond)
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
