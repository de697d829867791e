package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

type redisStore struct {
	client redis.UniversalClient
}

// NewRedis returns a Store on client; Close closes the client.
func NewRedis(client redis.UniversalClient) Store {
	return &redisStore{client: client}
}

func (s *redisStore) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.client.Get(ctx, key).Bytes()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, ErrNotFound
		}
		return nil, wrap("get", err)
	}
	return b, nil
}

func (s *redisStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	return wrap("set", s.client.Set(ctx, key, value, ttl).Err())
}

func (s *redisStore) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := checkTTL(ttl); err != nil {
		return false, err
	}
	ok, err := s.client.SetNX(ctx, key, value, ttl).Result()
	return ok, wrap("setnx", err)
}

func (s *redisStore) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	return wrap("delete", s.client.Del(ctx, keys...).Err())
}

// incrScript increments and sets the expiry in one step: with INCR then EXPIRE as
// two commands, a crash in between would leave a counter that never expires.
var incrScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 and tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

func (s *redisStore) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if err := checkTTL(ttl); err != nil {
		return 0, err
	}
	ms := ttl.Milliseconds()
	if ttl > 0 && ms == 0 {
		ms = 1 // Redis counts in milliseconds; never round a real ttl down to "no expiry"
	}
	n, err := incrScript.Run(ctx, s.client, []string{key}, ms).Int64()
	if err != nil {
		if strings.Contains(err.Error(), "not an integer") {
			return 0, fmt.Errorf("kv: incr %s: %w", key, ErrNotInteger)
		}
		return 0, wrap("incr", err)
	}
	return n, nil
}

func (s *redisStore) Ping(ctx context.Context) error {
	return wrap("ping", s.client.Ping(ctx).Err())
}

func (s *redisStore) Close() error {
	if err := s.client.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return wrap("close", err)
	}
	return nil
}

func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.ErrClosed):
		return ErrClosed
	default:
		return fmt.Errorf("kv: redis %s: %w", op, err)
	}
}
