package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// ErrForbiddenAddress is returned when a webhook URL resolves to an address
// deliveries may not reach.
var ErrForbiddenAddress = errors.New("address not allowed for webhooks")

// blockedPrefixes are the ranges a delivery must never reach unless allowlisted:
// private, loopback, link-local (cloud metadata lives there), CGNAT, multicast,
// benchmarking, documentation and reserved space, in IPv4 and IPv6.
var blockedPrefixes = mustPrefixes(
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
	"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
	"::/128", "::1/128", "64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7",
	"fe80::/10", "ff00::/8", "fd00:ec2::254/128",
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// addressPolicy decides which IP addresses deliveries may connect to.
type addressPolicy struct {
	allow []netip.Prefix
}

// parseAllowlist parses CIDRs or bare addresses.
func parseAllowlist(entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range entries {
		if p, err := netip.ParsePrefix(e); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("webhooks allowlist entry %q: not a CIDR or IP address", e)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// check returns ErrForbiddenAddress unless addr is public or allowlisted.
func (p addressPolicy) check(addr netip.Addr) error {
	addr = addr.Unmap()
	for _, a := range p.allow {
		if a.Contains(addr) {
			return nil
		}
	}
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsLoopback() || addr.IsPrivate() ||
		addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() || addr.IsMulticast() ||
		addr.IsInterfaceLocalMulticast() {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, addr)
	}
	for _, b := range blockedPrefixes {
		if b.Contains(addr) {
			return fmt.Errorf("%w: %s", ErrForbiddenAddress, addr)
		}
	}
	return nil
}

// control runs after DNS resolution, on the address actually dialled, so a name
// that changes to a private address after registration is still refused.
func (p addressPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrForbiddenAddress, address)
	}
	return p.check(ap.Addr())
}

// dialer returns a dialer that refuses forbidden addresses at connection time.
func (p addressPolicy) dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: p.control}
}

// dialContext is the transport's DialContext.
func (p addressPolicy) dialContext(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := p.dialer(timeout)
	return d.DialContext
}
