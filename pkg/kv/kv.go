package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/manushya-ai/manushya/pkg/telemetry"
)

var (
	// ErrNotFound is returned by Get when the key does not exist or has expired.
	ErrNotFound = errors.New("kv: key not found")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("kv: store closed")
	// ErrNotInteger is returned by Incr when the stored value is not an integer.
	ErrNotInteger = errors.New("kv: value is not an integer")
	// ErrNegativeTTL is returned for a negative TTL; zero means no expiry.
	ErrNegativeTTL = errors.New("kv: negative ttl")
)

// Store is a key-value store with expiry. A ttl of zero means the key does not
// expire. Values are copied: callers may reuse their slices.
type Store interface {
	// Get returns the value of key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key, replacing any value and expiry.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// SetNX stores value only if key does not exist, reporting whether it did.
	SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// Delete removes keys; missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// Incr adds one to the integer at key (a missing key counts as zero) and
	// returns the new value. ttl applies only when this call creates the key, so a
	// fixed window is not extended by later increments.
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	// Ping checks the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// Open returns the store rawURL names: "" an in-process store (one process only,
// so for development), redis://, rediss:// (TLS) or unix:// a Redis client. The
// Redis server is pinged so a wrong URL fails at startup.
func Open(ctx context.Context, rawURL string) (Store, error) {
	if rawURL == "" {
		return NewMemory(), nil
	}
	if !strings.HasPrefix(rawURL, "redis://") && !strings.HasPrefix(rawURL, "rediss://") && !strings.HasPrefix(rawURL, "unix://") {
		return nil, fmt.Errorf("kv: unsupported URL %q: want redis://, rediss:// or unix://", telemetry.RedactURL(rawURL))
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		// The parse error may quote the URL, password included.
		return nil, fmt.Errorf("kv: invalid Redis URL %q", telemetry.RedactURL(rawURL))
	}
	// Callers bound each call with a context deadline (the rate limiter gives
	// Redis 100 ms before falling back); without this go-redis ignores deadlines on
	// socket reads, and a slow (not dead) Redis would hold a request for its 3 s
	// read timeout.
	opts.ContextTimeoutEnabled = true
	client := redis.NewClient(opts)
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("kv: ping %s: %w", telemetry.RedactURL(rawURL), err)
	}
	return NewRedis(client), nil
}

// RedisClient returns the Redis client behind s, if s is a Redis store.
func RedisClient(s Store) (redis.UniversalClient, bool) {
	r, ok := s.(*redisStore)
	if !ok {
		return nil, false
	}
	return r.client, true
}

func checkTTL(ttl time.Duration) error {
	if ttl < 0 {
		return ErrNegativeTTL
	}
	return nil
}
