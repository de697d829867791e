package ratelimit_test

import (
	"testing"

	"github.com/manushya-ai/manushya/pkg/ratelimit"
)

// FuzzParseKey: keys come from clients (GetRateLimitState, ResetRateLimit); no input
// may panic, and a key that parses names its tenant.
//
//	go test ./pkg/ratelimit -run '^$' -fuzz FuzzParseKey -fuzztime 30s
func FuzzParseKey(f *testing.F) {
	for _, seed := range []string{"{t}:tenant:*", "{t}:role:admin:i:memory", "{t}:api_key:k:*", "{}:x", "{", "}:", "{t}:role::::"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		pk, ok := ratelimit.ParseKey(key)
		if !ok {
			return
		}
		if tenant, _ := ratelimit.TenantOfKey(key); tenant != pk.Tenant || tenant == "" {
			t.Fatalf("key %q parsed with tenant %q", key, pk.Tenant)
		}
	})
}
