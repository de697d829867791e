package ratelimit

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// result is one counter's answer.
type result struct {
	allowed    bool
	remaining  int64
	retryAfter time.Duration // > 0 only when refused
	resetAfter time.Duration // until the counter is full again
}

// backend counts. cost 0 reads the state without consuming.
type backend interface {
	allow(ctx context.Context, key string, l Limit, cost int64) (result, error)
	reset(ctx context.Context, key string) error
}

// redisBackend is GCRA in Redis through redis_rate.
type redisBackend struct {
	rl *redis_rate.Limiter
}

func newRedisBackend(client redis.UniversalClient) *redisBackend {
	return &redisBackend{rl: redis_rate.NewLimiter(client)}
}

func (b *redisBackend) allow(ctx context.Context, key string, l Limit, cost int64) (result, error) {
	res, err := b.rl.AllowN(ctx, key, redis_rate.Limit{Rate: int(l.Rate), Burst: int(l.burst()), Period: l.Period}, int(cost))
	if err != nil {
		return result{}, err
	}
	r := result{allowed: res.Allowed > 0 || cost == 0, remaining: int64(res.Remaining), resetAfter: max(res.ResetAfter, 0)}
	if !r.allowed {
		r.retryAfter = max(res.RetryAfter, time.Millisecond)
	}
	return r, nil
}

func (b *redisBackend) reset(ctx context.Context, key string) error { return b.rl.Reset(ctx, key) }

// memoryBackend is GCRA in process: the development limiter, and the fallback
// while Redis is down. It keeps one theoretical arrival time per key in sharded
// maps; keys whose counter is full again are swept.
type memoryBackend struct {
	seed   maphash.Seed
	shards [64]memShard
	now    func() time.Time
}

type memShard struct {
	mu    sync.Mutex
	tat   map[string]time.Time
	sweep time.Time
}

func newMemoryBackend() *memoryBackend {
	m := &memoryBackend{seed: maphash.MakeSeed(), now: time.Now}
	for i := range m.shards {
		m.shards[i].tat = make(map[string]time.Time)
	}
	return m
}

func (m *memoryBackend) shard(key string) *memShard {
	return &m.shards[maphash.String(m.seed, key)%uint64(len(m.shards))]
}

// allow follows redis_rate's arithmetic, so both backends answer alike.
func (m *memoryBackend) allow(_ context.Context, key string, l Limit, cost int64) (result, error) {
	now := m.now()
	emission := time.Duration(float64(l.Period) / float64(l.Rate))
	burstOffset := time.Duration(float64(emission) * float64(l.burst()))
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.sweep) > time.Minute {
		for k, t := range s.tat {
			if !t.After(now) {
				delete(s.tat, k)
			}
		}
		s.sweep = now
	}
	tat := s.tat[key]
	if tat.Before(now) {
		tat = now
	}
	newTAT := tat.Add(time.Duration(cost) * emission)
	allowAt := newTAT.Add(-burstOffset)
	diff := now.Sub(allowAt)
	if diff < 0 {
		return result{retryAfter: max(-diff, time.Millisecond), resetAfter: tat.Sub(now)}, nil
	}
	if cost > 0 {
		s.tat[key] = newTAT
	}
	return result{
		allowed:    true,
		remaining:  int64(math.Floor(float64(diff) / float64(emission))),
		resetAfter: newTAT.Sub(now),
	}, nil
}

func (m *memoryBackend) reset(_ context.Context, key string) error {
	s := m.shard(key)
	s.mu.Lock()
	delete(s.tat, key)
	s.mu.Unlock()
	return nil
}
