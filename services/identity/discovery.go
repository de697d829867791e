package identity

import (
	"context"
	"net/url"
	"strings"

	"github.com/manushya-ai/manushya/pkg/auth"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// Paths of the documents and endpoints the discovery document points to, as the
// gateway serves them.
const (
	jwksPath    = "/.well-known/jwks.json"
	loginPath   = "/v1/auth/login"
	refreshPath = "/v1/sessions/refresh"
)

// accessTokenClaims are the claims signAccessToken writes (auth.AccessClaims).
var accessTokenClaims = []string{
	"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "tid", "sid", "roles", "scope", "ext", "kind", "gen",
}

// GetOpenIdConfiguration answers with the discovery document of the issuer. An
// issuer that is an http(s) URL is where the gateway is reached, so the endpoints
// hang off it; any other issuer name gives paths for the gateway to resolve.
func (a *authServer) GetOpenIdConfiguration(context.Context, *identityv1.GetOpenIdConfigurationRequest) (*identityv1.GetOpenIdConfigurationResponse, error) { //nolint:revive // the generated interface names it
	cfg := a.svc.tokens.cfg
	base := issuerBase(cfg.Issuer)
	return &identityv1.GetOpenIdConfigurationResponse{
		Issuer:                           cfg.Issuer,
		JwksUri:                          base + jwksPath,
		IdTokenSigningAlgValuesSupported: []string{auth.AccessTokenAlg},
		SubjectTypesSupported:            []string{"public"},
		ResponseTypesSupported:           []string{},
		ClaimsSupported:                  accessTokenClaims,
		LoginEndpoint:                    base + loginPath,
		RefreshEndpoint:                  base + refreshPath,
	}, nil
}

// issuerBase is the URL the endpoints are relative to: the issuer without a
// trailing slash when it is an absolute http(s) URL, else "" (paths only).
func issuerBase(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return ""
	}
	return strings.TrimSuffix(issuer, "/")
}
