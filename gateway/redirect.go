package gateway

import (
	"context"
	"net/http"
	"net/url"

	"google.golang.org/protobuf/proto"
)

// Responses that send the browser elsewhere. The SSO protos define them:
// StartSsoLoginResponse.authorization_url (GET /v1/sso/login/{provider}) and
// SsoCallbackResponse.redirect_url. Matching on the getter, not the type, keeps
// the gateway free of SSO knowledge: any response with a non-empty field of
// either name answers 302, so other messages must not reuse these names for URLs
// that are merely reported.
type (
	authorizationURLResponse interface{ GetAuthorizationUrl() string }
	redirectURLResponse      interface{ GetRedirectUrl() string }
)

// redirectOnURL is a forward-response option: it runs before the body is written,
// so setting the status here turns the JSON answer into a redirect (the JSON
// still follows as the body, for clients that do not follow redirects).
func redirectOnURL(_ context.Context, w http.ResponseWriter, m proto.Message) error {
	target := ""
	if r, ok := m.(authorizationURLResponse); ok {
		target = r.GetAuthorizationUrl()
	}
	if r, ok := m.(redirectURLResponse); ok && target == "" {
		target = r.GetRedirectUrl()
	}
	if target == "" {
		return nil
	}
	if _, err := url.Parse(target); err != nil {
		// A broken URL is the service's bug; a 200 with the JSON shows it.
		return nil
	}
	w.Header().Set("Location", target)
	// The URL carries one-time state (the OAuth state and nonce); never cache it.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
	return nil
}
