package identity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// ssoHTTPTimeout bounds every call to a provider (discovery, keys, token, userinfo).
const ssoHTTPTimeout = 10 * time.Second

// discoveryTTL is how long a provider's discovery document is trusted before it is
// fetched again. Its keys are refreshed sooner by go-oidc whenever a token names a
// key it does not know, so a provider's key rotation needs no wait.
const discoveryTTL = time.Hour

// ssoAddressPolicy refuses connections to addresses a tenant admin must not be able
// to reach through the issuer URL (loopback, private, link-local where cloud
// metadata lives, ...) unless the operator allowed them, as on-premises identity
// providers need. It runs on the address actually dialled, after DNS, so a name that
// later resolves to a private address is refused too.
type ssoAddressPolicy struct {
	allowed []netip.Prefix
}

func newSSOAddressPolicy(cidrs []string) (ssoAddressPolicy, error) {
	var p ssoAddressPolicy
	for _, c := range cidrs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return p, fmt.Errorf("identity: sso allowed address %q: %w", c, err)
		}
		p.allowed = append(p.allowed, pfx)
	}
	return p, nil
}

func (p ssoAddressPolicy) check(addr netip.Addr) error {
	addr = addr.Unmap()
	for _, pfx := range p.allowed {
		if pfx.Contains(addr) {
			return nil
		}
	}
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsLoopback() || addr.IsPrivate() ||
		addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() || addr.IsMulticast() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(addr) {
		return fmt.Errorf("address %s is not reachable for single sign-on (allow it with sso.allowed_addresses)", addr)
	}
	return nil
}

func (p ssoAddressPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("sso dial %s: %w", address, err)
	}
	return p.check(ap.Addr())
}

// httpClient is the client every provider call goes through.
func (p ssoAddressPolicy) httpClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: p.control}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would dial on our behalf and bypass the check
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          50,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: ssoHTTPTimeout,
	}
	return &http.Client{
		Transport: tr, Timeout: ssoHTTPTimeout,
		// Provider endpoints answer directly; following redirects would only widen
		// what an issuer URL can make the server fetch.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// oidcProviders caches discovered providers by issuer URL, shared by every tenant
// configuring the same issuer (their client ids differ, not the issuer's keys).
type oidcProviders struct {
	client *http.Client
	mu     sync.Mutex
	byURL  map[string]cachedProvider
}

type cachedProvider struct {
	p       *oidc.Provider
	fetched time.Time
}

func newOIDCProviders(client *http.Client) *oidcProviders {
	return &oidcProviders{client: client, byURL: map[string]cachedProvider{}}
}

// clientContext carries the guarded client to go-oidc and x/oauth2, which take
// their HTTP client from the context.
func (o *oidcProviders) clientContext(ctx context.Context) context.Context {
	ctx = oidc.ClientContext(ctx, o.client)
	return context.WithValue(ctx, oauth2.HTTPClient, o.client)
}

// discover fetches the issuer's discovery document now, without the cache: used
// when a provider is configured, so a wrong issuer is reported at once.
func (o *oidcProviders) discover(ctx context.Context, issuer string) (*oidc.Provider, error) {
	// The provider keeps this context for its key fetches; it must outlive the
	// request (go-oidc drops its cancellation) and carry the guarded client.
	p, err := oidc.NewProvider(o.clientContext(context.WithoutCancel(ctx)), issuer)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	o.byURL[issuer] = cachedProvider{p: p, fetched: time.Now()}
	o.mu.Unlock()
	return p, nil
}

// get returns the issuer's provider, discovering it when it is not cached or the
// cached document is old.
func (o *oidcProviders) get(ctx context.Context, issuer string) (*oidc.Provider, error) {
	o.mu.Lock()
	c, ok := o.byURL[issuer]
	o.mu.Unlock()
	if ok && time.Since(c.fetched) < discoveryTTL {
		return c.p, nil
	}
	p, err := o.discover(ctx, issuer)
	if err != nil && ok {
		// The provider is briefly unreachable: the document we have still names the
		// right endpoints and keys, better than failing every sign-in.
		return c.p, nil
	}
	return p, err
}

// oauthErrorCode extracts the provider's OAuth error code ("invalid_grant") from a
// failed token exchange, for the sign-in failure event and the client's message.
func oauthErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		return re.ErrorCode
	}
	return ""
}
