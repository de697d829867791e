package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/kv"
)

// Cache defaults: a verified key is trusted from process memory for a few seconds
// and from Redis for a minute. Revocations do not wait for either: every change to a
// key or its identity is published on the bus and evicts the entry in every process.
const (
	defaultKeyCacheLocalTTL  = 10 * time.Second
	defaultKeyCacheRemoteTTL = time.Minute
	defaultKeyCacheSize      = 10_000
	// touchInterval throttles last_used_time writes per key and process.
	touchInterval = time.Minute
	kvKeyPrefix   = "identity:apikey:"
)

// cachedKey is what a successful verification leaves behind. It holds no secret:
// it is found by the keyed hash of the key, never by the key itself.
type cachedKey struct {
	TenantID   string     `json:"tid"`
	IdentityID string     `json:"iid"`
	ExternalID string     `json:"ext"`
	Kind       string     `json:"kind"`
	Roles      []string   `json:"roles"`
	Scopes     []string   `json:"scopes"`
	KeyID      string     `json:"kid"`
	Expire     *time.Time `json:"exp,omitempty"`
	CachedAt   time.Time  `json:"at"`
	// localUntil is when the in-process copy must be checked again.
	localUntil time.Time
}

func (c *cachedKey) principal() *auth.Principal {
	return &auth.Principal{
		TenantID: c.TenantID, IdentityID: c.IdentityID, ExternalID: c.ExternalID, Kind: c.Kind,
		Roles: c.Roles, Scopes: c.Scopes, APIKeyID: c.KeyID,
	}
}

// apiKeyCache is the two-level verification cache: a bounded map in process and
// Redis (any kv.Store) shared by every process.
type apiKeyCache struct {
	kv        kv.Store
	localTTL  time.Duration
	remoteTTL time.Duration
	max       int
	logger    *slog.Logger
	bus       *bus.Bus // evictions arrive here; nil in a single process without a bus

	mu      sync.Mutex
	entries map[string]*cachedKey // by keyed hash
	// evicted remembers when a key or identity id was last evicted, so an entry
	// that was written to Redis before the eviction is not trusted again.
	evicted map[string]time.Time
	touched map[string]time.Time // key id -> last last_used_time write
}

func newAPIKeyCache(store kv.Store, localTTL, remoteTTL time.Duration, size int, logger *slog.Logger) *apiKeyCache {
	if localTTL <= 0 {
		localTTL = defaultKeyCacheLocalTTL
	}
	if remoteTTL <= 0 {
		remoteTTL = defaultKeyCacheRemoteTTL
	}
	if size <= 0 {
		size = defaultKeyCacheSize
	}
	return &apiKeyCache{
		kv: store, localTTL: localTTL, remoteTTL: remoteTTL, max: size, logger: logger,
		entries: map[string]*cachedKey{}, evicted: map[string]time.Time{}, touched: map[string]time.Time{},
	}
}

func remoteKey(hash []byte) string { return kvKeyPrefix + base64.RawURLEncoding.EncodeToString(hash) }

// get returns the cached principal of the key with this hash, if any is still good.
func (c *apiKeyCache) get(ctx context.Context, hash []byte, now time.Time) (*cachedKey, bool) {
	c.mu.Lock()
	e, ok := c.entries[string(hash)]
	if ok && now.Before(e.localUntil) && (e.Expire == nil || now.Before(*e.Expire)) {
		c.mu.Unlock()
		return e, true
	}
	if ok {
		delete(c.entries, string(hash))
	}
	c.mu.Unlock()
	if c.kv == nil {
		return nil, false
	}
	raw, err := c.kv.Get(ctx, remoteKey(hash))
	if err != nil {
		if !errors.Is(err, kv.ErrNotFound) {
			c.logger.WarnContext(ctx, "api key cache read failed", "err", err)
		}
		return nil, false
	}
	e = &cachedKey{}
	if err := json.Unmarshal(raw, e); err != nil || (e.Expire != nil && !now.Before(*e.Expire)) {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.evictedSince(e.KeyID, e.CachedAt) || c.evictedSince(e.IdentityID, e.CachedAt) {
		return nil, false
	}
	c.storeLocal(hash, e, now)
	return e, true
}

func (c *apiKeyCache) evictedSince(id string, at time.Time) bool {
	t, ok := c.evicted[id]
	return ok && !at.After(t)
}

// put caches a verification that just came from the database; now is when the
// read began. A key or identity evicted since then may have changed after the read
// (a revocation or deactivation committing meanwhile), so it is not cached.
func (c *apiKeyCache) put(ctx context.Context, hash []byte, e *cachedKey, now time.Time) {
	e.CachedAt = now
	c.mu.Lock()
	if c.evictedSince(e.KeyID, now) || c.evictedSince(e.IdentityID, now) {
		c.mu.Unlock()
		return
	}
	c.storeLocal(hash, e, now)
	c.mu.Unlock()
	if c.kv == nil {
		return
	}
	ttl := c.remoteTTL
	if e.Expire != nil {
		ttl = min(ttl, e.Expire.Sub(now))
	}
	if ttl <= 0 {
		return
	}
	raw, err := json.Marshal(e)
	if err == nil {
		err = c.kv.Set(ctx, remoteKey(hash), raw, ttl)
	}
	if err != nil {
		c.logger.WarnContext(ctx, "api key cache write failed", "err", err)
	}
}

// storeLocal adds e, dropping expired entries first and arbitrary ones if the map is
// still full (a cache miss only costs a database read). Called with mu held.
func (c *apiKeyCache) storeLocal(hash []byte, e *cachedKey, now time.Time) {
	cp := *e
	cp.localUntil = now.Add(c.localTTL)
	if len(c.entries) >= c.max {
		for k, old := range c.entries {
			if !now.Before(old.localUntil) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[string(hash)] = &cp
}

// evict drops every entry of a key id or an identity id from this process and
// remembers the time, so older copies in Redis are refused.
func (c *apiKeyCache) evict(id string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.KeyID == id || e.IdentityID == id {
			delete(c.entries, k)
		}
	}
	for k, t := range c.evicted {
		if now.Sub(t) > c.remoteTTL {
			delete(c.evicted, k)
		}
	}
	c.evicted[id] = now
}

// evictRemote deletes the Redis entry of a key whose hash the caller knows (the
// process that changed the key).
func (c *apiKeyCache) evictRemote(ctx context.Context, hash []byte) {
	if c.kv == nil {
		return
	}
	if err := c.kv.Delete(ctx, remoteKey(hash)); err != nil {
		c.logger.WarnContext(ctx, "api key cache delete failed", "err", err)
	}
}

// shouldTouch reports whether this process should record a use of keyID now.
func (c *apiKeyCache) shouldTouch(keyID string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.touched[keyID]; ok && now.Sub(last) < touchInterval {
		return false
	}
	if len(c.touched) >= c.max {
		clear(c.touched)
	}
	c.touched[keyID] = now
	return true
}

// subscribe evicts entries when any process publishes a change to a key or an
// identity. Events come from the identity outbox, so a change is announced only once
// it has committed.
func (c *apiKeyCache) subscribe(b *bus.Bus) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for _, filter := range []string{bus.TypeFilter("api_key.>"), bus.TypeFilter("identity.>")} {
		sub, err := b.Conn.Subscribe(filter, c.onEvent)
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return nil, err
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

func (c *apiKeyCache) onEvent(msg *nats.Msg) {
	ev, err := bus.ParseCloudEvent(msg.Data)
	if err != nil {
		c.logger.Warn("api key cache: unreadable event", "subject", msg.Subject, "err", err)
		return
	}
	if strings.HasSuffix(ev.Type, ".created") || ev.Subject == "" {
		return
	}
	c.evict(ev.Subject, time.Now())
}
