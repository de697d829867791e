package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// A sign-in is bound to the browser that started it (login CSRF): StartSsoLogin
// sets a cookie holding a random value whose hash is kept with the state, and the
// callback refuses a state whose cookie is missing or different. Without it, a
// callback URL (code and state) of the attacker's own sign-in, opened in a
// victim's browser, would sign the victim in as the attacker.
//
// The cookie travels as gRPC metadata: the gateway forwards the request's Cookie
// header as "grpcgateway-cookie" and turns the "set-cookie" response metadata into
// a Set-Cookie header. A gRPC client driving the flow itself sends it back as
// "cookie" metadata.

// ssoCookieName names the binding cookie; one at a time per browser, so the later
// of two sign-ins started in one browser is the one that can finish.
const ssoCookieName = "manushya_sso"

// mdSetCookie is the response metadata the gateway turns into Set-Cookie.
const mdSetCookie = "set-cookie"

// browserCookie is the Set-Cookie of a started sign-in, or with an empty value the
// one that clears it. It is only sent to the callback path, never readable by
// scripts (HttpOnly), sent on the provider's top-level redirect back (SameSite=Lax,
// which Strict would not allow), and Secure whenever the public URL is https.
func (st *ssoState) browserCookie(value string, ttl time.Duration) *http.Cookie {
	c := &http.Cookie{
		Name: ssoCookieName, Value: value, Path: st.cookiePath, HttpOnly: true, Secure: st.secureCookie,
		SameSite: http.SameSiteLaxMode, MaxAge: int(ttl.Seconds()),
	}
	if value == "" {
		c.MaxAge = -1
	}
	return c
}

// cookieSettings derives the cookie's path and Secure flag from the public
// callback base URL: a callback served over plain http (development) could never
// receive a Secure cookie back.
func cookieSettings(base string) (path string, secure bool) {
	u, _ := url.Parse(base)
	return strings.TrimRight(u.Path, "/") + "/v1/sso/callback/", u.Scheme == "https"
}

// setBrowserCookie sends the cookie with the call's response headers. Outside a
// gRPC call (tests calling the service directly) there is nowhere to send it.
func setBrowserCookie(ctx context.Context, c *http.Cookie) {
	_ = grpc.SetHeader(ctx, metadata.Pairs(mdSetCookie, c.String()))
}

// browserHash is what the state keeps of the cookie's value.
func browserHash(value string) string {
	h := sha256.Sum256([]byte("manushya sso browser\x00" + value))
	return hex.EncodeToString(h[:])
}

// browserCookieValue reads the binding cookie from the call's metadata.
func browserCookieValue(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, key := range []string{"grpcgateway-cookie", "cookie"} {
		for _, line := range md.Get(key) {
			cookies, err := http.ParseCookie(line)
			if err != nil {
				continue
			}
			for _, c := range cookies {
				if c.Name == ssoCookieName && c.Value != "" {
					return c.Value
				}
			}
		}
	}
	return ""
}

// sameBrowser reports whether the call carries the cookie of the sign-in whose
// state kept wantHash. A state without a hash (none is ever stored so) fails.
func sameBrowser(ctx context.Context, wantHash string) bool {
	got := browserCookieValue(ctx)
	if got == "" || wantHash == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(browserHash(got)), []byte(wantHash)) == 1
}
