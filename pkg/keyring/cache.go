package keyring

import (
	"sync"
	"time"

	"github.com/google/uuid"
)

// cache keeps unwrapped data keys in process for a short time, so sealing and
// opening cost a map lookup and an AES-GCM operation. It is bounded: when full it
// drops expired scopes first, then arbitrary ones (map order), which a reload
// repairs.
type cache struct {
	ttl  time.Duration
	size int
	mu   sync.RWMutex
	m    map[Scope]*scopeKeys
}

func newCache(ttl time.Duration, size int) *cache {
	return &cache{ttl: ttl, size: size, m: map[Scope]*scopeKeys{}}
}

func (c *cache) get(s Scope) *scopeKeys {
	c.mu.RLock()
	sk := c.m[s]
	c.mu.RUnlock()
	if sk == nil || time.Since(sk.loaded) > c.ttl {
		return nil
	}
	return sk
}

func (c *cache) put(s Scope, sk *scopeKeys) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[s]; !ok && len(c.m) >= c.size {
		for k, v := range c.m {
			if time.Since(v.loaded) > c.ttl {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.size*7/8 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[s] = sk
}

func (c *cache) drop(s Scope) {
	c.mu.Lock()
	delete(c.m, s)
	c.mu.Unlock()
}

func (c *cache) dropTenant(t uuid.UUID) {
	c.mu.Lock()
	for s := range c.m {
		if s.Tenant == t {
			delete(c.m, s)
		}
	}
	c.mu.Unlock()
}
