package usage

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"

	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
)

// summaryCache keeps summaries for a few seconds. Rollups of a large tenant take
// hundreds of milliseconds to sum over a month, and dashboards poll; usage already
// trails ingestion by the consumer's batch, so a few more seconds change nothing a
// reader could tell. Concurrent misses for one key share one query.
type summaryCache struct {
	ttl   time.Duration
	group singleflight.Group
	mu    sync.Mutex
	items map[string]summaryEntry
}

type summaryEntry struct {
	resp    *usagev1.GetUsageSummaryResponse
	expires time.Time
}

func newSummaryCache(ttl time.Duration) *summaryCache {
	return &summaryCache{ttl: ttl, items: map[string]summaryEntry{}}
}

func (c *summaryCache) get(ctx context.Context, key string, load func(context.Context) (*usagev1.GetUsageSummaryResponse, error)) (*usagev1.GetUsageSummaryResponse, error) {
	now := time.Now()
	if c.ttl > 0 {
		c.mu.Lock()
		e, ok := c.items[key]
		c.mu.Unlock()
		if ok && now.Before(e.expires) {
			return proto.CloneOf(e.resp), nil
		}
	}
	v, err, _ := c.group.Do(key, func() (any, error) {
		resp, err := load(ctx)
		if err != nil || c.ttl <= 0 {
			return resp, err
		}
		c.mu.Lock()
		for k, e := range c.items {
			if now.After(e.expires) {
				delete(c.items, k)
			}
		}
		c.items[key] = summaryEntry{resp: resp, expires: time.Now().Add(c.ttl)}
		c.mu.Unlock()
		return resp, nil
	})
	if err != nil {
		return nil, err
	}
	return proto.CloneOf(v.(*usagev1.GetUsageSummaryResponse)), nil
}

// invalidate drops the cached summaries of tenant (keys start with its id): its
// usage just grew in this process.
func (c *summaryCache) invalidate(tenant string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.items {
		if len(k) > len(tenant) && k[:len(tenant)] == tenant {
			delete(c.items, k)
		}
	}
}
