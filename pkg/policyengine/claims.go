package policyengine

import (
	"context"
	"sync"
	"time"
)

// ActsForClaim is the identity claim naming the identities an identity (usually an
// agent) acts for: one identity id, or a list of them. Policies read it as
// input.principal.acts_for, always a list. Only tenant admins may set it (the
// identity service refuses it from anyone else), since a policy may grant on it.
const ActsForClaim = "acts_for"

// maxClaimsEntries bounds the identities whose claims are kept, over all tenants.
const maxClaimsEntries = 100000

type claimsEntry struct {
	claims   map[string]any
	actsFor  []string
	loadedAt time.Time
}

// claimsCache keeps identities' claims per tenant for maxAge; an identity.* event
// of the tenant drops the tenant's entries (see Authorizer.Subscribe).
type claimsCache struct {
	maxAge time.Duration

	mu      sync.RWMutex
	tenants map[string]map[string]claimsEntry
	size    int
	// gens counts each tenant's drops, so a load that an identity event overtook
	// is used once but not kept.
	gens map[string]uint64
}

func (c *claimsCache) get(ctx context.Context, tenant, identity string,
	load func(ctx context.Context, tenantID, identityID string) (map[string]any, error),
) (claimsEntry, error) {
	c.mu.RLock()
	e, ok := c.tenants[tenant][identity]
	gen := c.gens[tenant]
	c.mu.RUnlock()
	if ok && time.Since(e.loadedAt) < c.maxAge {
		return e, nil
	}
	claims, err := load(ctx, tenant, identity)
	if err != nil {
		return claimsEntry{}, err
	}
	e = claimsEntry{claims: claims, actsFor: ActsFor(claims), loadedAt: time.Now()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[tenant] != gen {
		return e, nil
	}
	if c.size >= maxClaimsEntries {
		clear(c.tenants)
		c.size = 0
	}
	m := c.tenants[tenant]
	if m == nil {
		m = map[string]claimsEntry{}
		c.tenants[tenant] = m
	}
	if _, had := m[identity]; !had {
		c.size++
	}
	m[identity] = e
	return e, nil
}

func (c *claimsCache) dropTenant(tenant string) {
	c.mu.Lock()
	c.size -= len(c.tenants[tenant])
	delete(c.tenants, tenant)
	if c.gens == nil {
		c.gens = map[string]uint64{}
	}
	c.gens[tenant]++
	c.mu.Unlock()
}

// ActsFor reads the acts_for claim: a string or a list of strings; anything else
// names nobody.
func ActsFor(claims map[string]any) []string {
	switch v := claims[ActsForClaim].(type) {
	case string:
		if v != "" {
			return []string{v}
		}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return v
	}
	return nil
}
