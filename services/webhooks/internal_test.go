package webhooks

import (
	"net/http"
	"net/netip"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestAddressPolicy(t *testing.T) {
	t.Parallel()
	p := addressPolicy{}
	for _, a := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
		"0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "fd00:ec2::254"} {
		require.ErrorIs(t, p.check(netip.MustParseAddr(a)), ErrForbiddenAddress, a)
	}
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"} {
		require.NoError(t, p.check(netip.MustParseAddr(a)), a)
	}
	allow, err := parseAllowlist([]string{"127.0.0.0/8", "::1"})
	require.NoError(t, err)
	p = addressPolicy{allow: allow}
	require.NoError(t, p.check(netip.MustParseAddr("127.0.0.1")))
	require.NoError(t, p.check(netip.MustParseAddr("::1")))
	require.Error(t, p.check(netip.MustParseAddr("10.0.0.1")))
	_, err = parseAllowlist([]string{"localhost"})
	require.Error(t, err)
}

func TestPatternsAndTypeFilter(t *testing.T) {
	t.Parallel()
	require.ElementsMatch(t, []string{"usage.quota.exceeded", "*", "usage.*", "usage.quota.*"}, patternsFor("usage.quota.exceeded"))
	require.True(t, matchesAny([]string{"memory.*"}, "memory.created"))
	require.False(t, matchesAny([]string{"memory.*"}, "identity.created"))
	exact, prefix := typeFilter("memory.*")
	require.Nil(t, exact)
	require.Equal(t, "memory.", *prefix)
}

func TestSignMatchesSpecVector(t *testing.T) {
	t.Parallel()
	// The example of the Standard Webhooks specification.
	key, err := secretKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	got := sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0),
		[]byte(`{"test": 2432232314}`), key)
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

func TestSealers(t *testing.T) {
	t.Parallel()
	s, err := NewAESGCMSealer(make([]byte, 32))
	require.NoError(t, err)
	sealed, err := s.Seal([]byte("whsec_x"), []byte("row-1"))
	require.NoError(t, err)
	require.NotContains(t, string(sealed), "whsec_x")
	plain, err := s.Open(sealed, []byte("row-1"))
	require.NoError(t, err)
	require.Equal(t, "whsec_x", string(plain))
	_, err = s.Open(sealed, []byte("row-2"))
	require.Error(t, err, "a sealed value cannot move to another row")
}

func TestBackoffHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	s := &Service{cfg: Config{}.withDefaults()}
	d := s.backoff(1, 0)
	require.InDelta(t, float64(5*time.Second), float64(d), float64(time.Second)/2+1)
	require.Equal(t, time.Hour, s.backoff(1, time.Hour))
	now := time.Unix(1700000000, 0)
	require.Equal(t, 120*time.Second, parseRetryAfter("120", now))
	require.Equal(t, maxRetryAfter, parseRetryAfter("99999999", now))
	require.Equal(t, time.Minute, parseRetryAfter(now.Add(time.Minute).UTC().Format(http.TimeFormat), now))
	require.Zero(t, parseRetryAfter("soon", now))
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "1e9", " 7 "} {
		f.Add(s)
	}
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, now)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %s", v, d)
		}
	})
}

func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://example.com/hook", "http://127.0.0.1:80/", "http://[::1]/", "ftp://x", "http://169.254.169.254/", "http://[fe80::1%25eth0]/", "https://user:pw@host/"} {
		f.Add(s)
	}
	s := &Service{}
	f.Fuzz(func(t *testing.T, raw string) {
		_ = s.checkURL(raw) // must not panic
	})
}

func FuzzExcerpt(f *testing.F) {
	f.Add([]byte("héllo wörld"), 3)
	f.Fuzz(func(t *testing.T, b []byte, limit int) {
		if limit < 0 || limit > 1<<16 {
			return
		}
		out, cut := excerpt(b, limit)
		if cut != (len(b) > limit) {
			t.Fatalf("cut = %v for %d > %d", cut, len(b), limit)
		}
		if !utf8.ValidString(out) {
			t.Fatalf("excerpt is not valid UTF-8: %q", out)
		}
	})
}
