package identity_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/manushya-ai/manushya/gateway"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
	"github.com/manushya-ai/manushya/services/identity"
)

// restFront serves the REST gateway for b on srv, which may be unstarted (so its
// address can go into the configuration first); it returns the base URL.
func restFront(t testing.TB, b *tokBundle, srv *httptest.Server) string {
	t.Helper()
	gw, err := gateway.New(context.Background(), gateway.Config{
		Upstreams:   map[string]string{gateway.UpstreamIdentity: b.conn.Target()},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = gw.Close() })
	srv.Config.Handler = gw.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestOpenIDDiscoveryVerifiesWithStandardLibrary follows what a resource server
// written against a standard JWT library does: from the issuer's name to the
// discovery document, from there to the keys, and then verifies an access token
// with nothing of ours.
func TestOpenIDDiscoveryVerifiesWithStandardLibrary(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	b := tokSetup(t, tokOptions{cfg: identity.TokenConfig{Issuer: issuer, Audience: "manushya-api"}})
	base := restFront(t, b, srv)
	b.user(t, "oidc-user@example.com", "user")
	access := b.login(t, "oidc-user@example.com").GetAccessToken()

	ctx := t.Context()
	get := func(url string) map[string]any {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		out := map[string]any{}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out
	}
	// OpenID Connect Discovery: the document lives under the issuer, and names it.
	doc := get(strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration")
	require.Equal(t, issuer, doc["issuer"])
	require.Equal(t, base+"/.well-known/jwks.json", doc["jwks_uri"])
	require.Equal(t, []any{"EdDSA"}, doc["id_token_signing_alg_values_supported"])
	require.Equal(t, []any{"public"}, doc["subject_types_supported"])
	require.Equal(t, []any{}, doc["response_types_supported"])
	require.Contains(t, doc["claims_supported"], "sid")
	require.Equal(t, base+"/v1/auth/login", doc["login_endpoint"])

	keys, err := jwk.Fetch(ctx, doc["jwks_uri"].(string))
	require.NoError(t, err)
	tok, err := jwt.Parse([]byte(access), jwt.WithKeySet(keys),
		jwt.WithIssuer(doc["issuer"].(string)), jwt.WithAudience("manushya-api"), jwt.WithValidate(true))
	require.NoError(t, err)
	sub, ok := tok.Subject()
	require.True(t, ok)
	require.NotEmpty(t, sub)

	// The same library refuses what it must: a changed signature, another audience.
	parts := strings.Split(access, ".")
	sig := []byte(parts[2])
	sig[5] ^= 0x01
	if sig[5] == '.' {
		sig[5] = 'A'
	}
	_, err = jwt.Parse([]byte(parts[0]+"."+parts[1]+"."+string(sig)), jwt.WithKeySet(keys), jwt.WithIssuer(issuer))
	require.Error(t, err)
	_, err = jwt.Parse([]byte(access), jwt.WithKeySet(keys), jwt.WithIssuer(issuer), jwt.WithAudience("someone-else"), jwt.WithValidate(true))
	require.Error(t, err)
}

// TestOpenIDConfigurationAPI reads the discovery metadata through the API itself,
// over gRPC and REST, for an issuer that is a name and not a URL: the service then
// answers with paths (the gateway's /.well-known copy resolves them).
func TestOpenIDConfigurationAPI(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	base := restFront(t, b, httptest.NewUnstartedServer(nil))
	apitest.Run(t, apitest.Target{GRPC: b.conn, RESTBase: base}, apitest.Case{
		Name:     "anonymous",
		Method:   "/manushya.identity.v1.AuthService/GetOpenIdConfiguration",
		Request:  &identityv1.GetOpenIdConfigurationRequest{},
		WantCode: codes.OK,
		Check: func(t testing.TB, resp proto.Message) {
			doc := apitest.As[*identityv1.GetOpenIdConfigurationResponse](t, resp)
			require.Equal(t, "manushya", doc.GetIssuer())
			require.Equal(t, "/.well-known/jwks.json", doc.GetJwksUri())
			require.Equal(t, []string{"EdDSA"}, doc.GetIdTokenSigningAlgValuesSupported())
			require.Contains(t, doc.GetClaimsSupported(), "tid")
			require.Equal(t, "/v1/sessions/refresh", doc.GetRefreshEndpoint())
		},
	})
}
