package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// result is one counter's answer.
type result struct {
	allowed    bool
	remaining  int64
	retryAfter time.Duration // > 0 only when refused
	resetAfter time.Duration // until the counter is full again
}

// ask is one counter a request consumes from. cost 0 reads the state without
// consuming.
type ask struct {
	key   string
	limit Limit
	cost  int64
}

// backend counts. allow answers every ask of one request at once, into out (as long
// as asks); each counter decides on its own, as if asked alone.
type backend interface {
	allow(ctx context.Context, asks []ask, out []result) error
	reset(ctx context.Context, key string) error
}

// redisPrefix is the prefix of counter keys in Redis, redis_rate's, so counters
// written before the limiter had its own script keep counting.
const redisPrefix = "rate:"

// gcraScript is GCRA over every key of one request in one script call, so a request
// costs one round trip however many limits apply. The arithmetic is redis_rate's
// (and memoryBackend's) per key: KEYS[i] takes ARGV burst, rate, period seconds and
// cost at 4i-3..4i. All keys of a request carry the same "{tenant}" hash tag, so
// they share a Redis Cluster slot. Times are relative to 2017-01-01 to keep the
// float arithmetic exact enough. It returns, per key, allowed (the cost, or 0),
// remaining, retry after and reset after (seconds, as strings).
var gcraScript = redis.NewScript(`
redis.replicate_commands()
local t = redis.call("TIME")
local now = (t[1] - 1483228800) + (t[2] / 1000000)
local out = {}
for i, key in ipairs(KEYS) do
  local burst = tonumber(ARGV[4*i-3])
  local rate = tonumber(ARGV[4*i-2])
  local period = tonumber(ARGV[4*i-1])
  local cost = tonumber(ARGV[4*i])
  local emission = period / rate
  local tat = redis.call("GET", key)
  if not tat then tat = now else tat = tonumber(tat) end
  tat = math.max(tat, now)
  local new_tat = tat + emission * cost
  local diff = now - (new_tat - emission * burst)
  local remaining = diff / emission
  if remaining < 0 then
    out[#out+1] = 0
    out[#out+1] = 0
    out[#out+1] = tostring(-diff)
    out[#out+1] = tostring(tat - now)
  else
    local reset_after = new_tat - now
    if reset_after > 0 then
      redis.call("SET", key, new_tat, "EX", math.ceil(reset_after))
    end
    out[#out+1] = cost
    out[#out+1] = remaining
    out[#out+1] = "-1"
    out[#out+1] = tostring(reset_after)
  end
end
return out
`)

// redisBackend is GCRA in Redis, one script call per request.
type redisBackend struct {
	client redis.UniversalClient
}

func newRedisBackend(client redis.UniversalClient) *redisBackend {
	return &redisBackend{client: client}
}

func (b *redisBackend) allow(ctx context.Context, asks []ask, out []result) error {
	var (
		keyBuf [4]string
		argBuf [16]any
	)
	keys, args := keyBuf[:0], argBuf[:0]
	for _, a := range asks {
		keys = append(keys, redisPrefix+a.key)
		args = append(args, a.limit.burst(), a.limit.Rate, a.limit.Period.Seconds(), a.cost)
	}
	v, err := gcraScript.Run(ctx, b.client, keys, args...).Slice()
	if err != nil {
		return err
	}
	if len(v) != 4*len(asks) {
		return fmt.Errorf("ratelimit: script answered %d values for %d keys", len(v), len(asks))
	}
	for i, a := range asks {
		allowed, ok1 := v[4*i].(int64)
		remaining, ok2 := v[4*i+1].(int64)
		retryS, ok3 := v[4*i+2].(string)
		resetS, ok4 := v[4*i+3].(string)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return fmt.Errorf("ratelimit: unexpected script answer %v", v[4*i:4*i+4])
		}
		retry, err := strconv.ParseFloat(retryS, 64)
		if err != nil {
			return fmt.Errorf("ratelimit: script retry after: %w", err)
		}
		reset, err := strconv.ParseFloat(resetS, 64)
		if err != nil {
			return fmt.Errorf("ratelimit: script reset after: %w", err)
		}
		r := result{allowed: allowed > 0 || a.cost == 0, remaining: remaining, resetAfter: max(seconds(reset), 0)}
		if !r.allowed {
			r.retryAfter = max(seconds(retry), time.Millisecond)
		}
		out[i] = r
	}
	return nil
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func (b *redisBackend) reset(ctx context.Context, key string) error {
	return b.client.Del(ctx, redisPrefix+key).Err()
}

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

func (m *memoryBackend) allow(_ context.Context, asks []ask, out []result) error {
	for i, a := range asks {
		out[i] = m.allowOne(a.key, a.limit, a.cost)
	}
	return nil
}

// allowOne follows gcraScript's arithmetic, so both backends answer alike.
func (m *memoryBackend) allowOne(key string, l Limit, cost int64) result {
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
		return result{retryAfter: max(-diff, time.Millisecond), resetAfter: tat.Sub(now)}
	}
	if cost > 0 {
		s.tat[key] = newTAT
	}
	return result{
		allowed:    true,
		remaining:  int64(math.Floor(float64(diff) / float64(emission))),
		resetAfter: newTAT.Sub(now),
	}
}

func (m *memoryBackend) reset(_ context.Context, key string) error {
	s := m.shard(key)
	s.mu.Lock()
	delete(s.tat, key)
	s.mu.Unlock()
	return nil
}
