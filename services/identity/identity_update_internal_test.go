package identity

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A verification that read the database before an identity was deactivated must not
// be cached after the eviction: it would let the key work for another TTL.
func TestKeyCacheRefusesReadsOlderThanEviction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newAPIKeyCache(nil, 0, 0, 0, slog.Default())
	hash := []byte("hash-of-a-key")
	readStart := time.Now()
	c.evict("identity-1", time.Now())
	c.put(ctx, hash, &cachedKey{IdentityID: "identity-1", KeyID: "key-1"}, readStart)
	_, ok := c.get(ctx, hash, time.Now())
	require.False(t, ok, "a read from before the eviction was cached")

	c.put(ctx, hash, &cachedKey{IdentityID: "identity-1", KeyID: "key-1"}, time.Now().Add(time.Millisecond))
	_, ok = c.get(ctx, hash, time.Now().Add(2*time.Millisecond))
	require.True(t, ok, "a read after the eviction is cached as usual")
}
