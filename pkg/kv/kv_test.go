package kv_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/kv"
)

// opener returns a fresh store and a key prefix no other test uses.
type opener func(t *testing.T) (kv.Store, string)

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	runContract(t, func(t *testing.T) (kv.Store, string) {
		s := kv.NewMemory()
		t.Cleanup(func() { _ = s.Close() })
		return s, ""
	})
}

func TestRedisStore(t *testing.T) {
	t.Parallel()
	runContract(t, openRedis)
}

func redisURL() string {
	if u := os.Getenv("MANUSHYA_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// openRedis connects to the test Redis and deletes the test's keys afterwards.
func openRedis(t *testing.T) (kv.Store, string) {
	t.Helper()
	url := redisURL()
	s, err := kv.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("%v\nThis test needs Redis: run `make setup` to start it, or set MANUSHYA_TEST_REDIS_URL.", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	prefix := "manushya-test:" + strings.ReplaceAll(t.Name(), "/", ":") + ":" + hex.EncodeToString(rnd[:]) + ":"

	t.Cleanup(func() {
		// The test may have closed its store, so clean up with a new one.
		ctx := context.Background()
		c, err := kv.Open(ctx, url)
		require.NoError(t, err)
		defer func() { _ = c.Close() }()
		client, ok := kv.RedisClient(c)
		require.True(t, ok)
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		require.NoError(t, iter.Err())
		require.NoError(t, c.Delete(ctx, keys...))
		_ = s.Close()
	})
	return s, prefix
}

// runContract is the behaviour every Store must have.
func runContract(t *testing.T, open opener) {
	t.Run("get missing", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		_, err := s.Get(t.Context(), p+"missing")
		require.ErrorIs(t, err, kv.ErrNotFound)
	})

	t.Run("set get delete", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		ctx := t.Context()
		value := []byte("hello")
		require.NoError(t, s.Set(ctx, p+"a", value, 0))
		value[0] = 'j' // the store keeps its own copy

		got, err := s.Get(ctx, p+"a")
		require.NoError(t, err)
		require.Equal(t, []byte("hello"), got)
		got[0] = 'c'
		got, err = s.Get(ctx, p+"a")
		require.NoError(t, err)
		require.Equal(t, []byte("hello"), got)

		require.NoError(t, s.Set(ctx, p+"a", []byte("replaced"), time.Hour))
		require.NoError(t, s.Set(ctx, p+"b", []byte{}, 0))
		got, err = s.Get(ctx, p+"a")
		require.NoError(t, err)
		require.Equal(t, []byte("replaced"), got)
		got, err = s.Get(ctx, p+"b")
		require.NoError(t, err)
		require.Empty(t, got)

		require.NoError(t, s.Delete(ctx, p+"a", p+"b", p+"never-set"))
		require.NoError(t, s.Delete(ctx))
		for _, k := range []string{"a", "b"} {
			_, err = s.Get(ctx, p+k)
			require.ErrorIs(t, err, kv.ErrNotFound)
		}
	})

	t.Run("binary values", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		v := []byte{0, 1, 2, 0xff, '\n', 0}
		require.NoError(t, s.Set(t.Context(), p+"bin", v, 0))
		got, err := s.Get(t.Context(), p+"bin")
		require.NoError(t, err)
		require.Equal(t, v, got)
	})

	t.Run("expiry", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		ctx := t.Context()
		require.NoError(t, s.Set(ctx, p+"short", []byte("x"), 20*time.Millisecond))
		require.NoError(t, s.Set(ctx, p+"long", []byte("x"), time.Hour))
		gone(t, s, p+"short")
		_, err := s.Get(ctx, p+"long")
		require.NoError(t, err)
	})

	t.Run("set without ttl clears the old expiry", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		ctx := t.Context()
		require.NoError(t, s.Set(ctx, p+"k", []byte("1"), 20*time.Millisecond))
		require.NoError(t, s.Set(ctx, p+"k", []byte("2"), 0))
		// witness is set later with the same ttl: once it has expired, k would
		// have too had it kept its first expiry.
		require.NoError(t, s.Set(ctx, p+"witness", []byte("x"), 20*time.Millisecond))
		gone(t, s, p+"witness")
		got, err := s.Get(ctx, p+"k")
		require.NoError(t, err)
		require.Equal(t, []byte("2"), got)
	})

	t.Run("setnx", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		ctx := t.Context()
		ok, err := s.SetNX(ctx, p+"lock", []byte("first"), 0)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = s.SetNX(ctx, p+"lock", []byte("second"), 0)
		require.NoError(t, err)
		require.False(t, ok)
		got, err := s.Get(ctx, p+"lock")
		require.NoError(t, err)
		require.Equal(t, []byte("first"), got)

		require.NoError(t, s.Delete(ctx, p+"lock"))
		ok, err = s.SetNX(ctx, p+"lock", []byte("third"), 20*time.Millisecond)
		require.NoError(t, err)
		require.True(t, ok)
		gone(t, s, p+"lock")
		ok, err = s.SetNX(ctx, p+"lock", []byte("fourth"), 0)
		require.NoError(t, err)
		require.True(t, ok, "an expired key can be taken again")
	})

	t.Run("incr", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		ctx := t.Context()
		for want := int64(1); want <= 3; want++ {
			n, err := s.Incr(ctx, p+"n", 0)
			require.NoError(t, err)
			require.Equal(t, want, n)
		}
		got, err := s.Get(ctx, p+"n")
		require.NoError(t, err)
		require.Equal(t, []byte("3"), got)

		require.NoError(t, s.Set(ctx, p+"m", []byte("41"), 0))
		n, err := s.Incr(ctx, p+"m", time.Hour)
		require.NoError(t, err)
		require.Equal(t, int64(42), n)

		require.NoError(t, s.Set(ctx, p+"text", []byte("abc"), 0))
		_, err = s.Incr(ctx, p+"text", 0)
		require.ErrorIs(t, err, kv.ErrNotInteger)
	})

	t.Run("incr sets the ttl only when it creates the key", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		ctx := t.Context()
		n, err := s.Incr(ctx, p+"window", 20*time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
		n, err = s.Incr(ctx, p+"window", time.Hour) // must not extend the window
		require.NoError(t, err)
		require.Equal(t, int64(2), n)
		require.NoError(t, s.Set(ctx, p+"witness", []byte("x"), 20*time.Millisecond))
		gone(t, s, p+"witness")
		_, err = s.Get(ctx, p+"window")
		require.ErrorIs(t, err, kv.ErrNotFound)

		// After expiry the next Incr starts a new window.
		n, err = s.Incr(ctx, p+"window", time.Hour)
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
	})

	t.Run("concurrent incr", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		ctx := t.Context()
		const workers, each = 8, 50
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range each {
					_, err := s.Incr(ctx, p+"c", time.Hour)
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		got, err := s.Get(ctx, p+"c")
		require.NoError(t, err)
		require.Equal(t, []byte("400"), got)
	})

	t.Run("negative ttl", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		ctx := t.Context()
		require.ErrorIs(t, s.Set(ctx, p+"k", []byte("x"), -time.Second), kv.ErrNegativeTTL)
		_, err := s.SetNX(ctx, p+"k", []byte("x"), -time.Second)
		require.ErrorIs(t, err, kv.ErrNegativeTTL)
		_, err = s.Incr(ctx, p+"k", -time.Second)
		require.ErrorIs(t, err, kv.ErrNegativeTTL)
		_, err = s.Get(ctx, p+"k")
		require.ErrorIs(t, err, kv.ErrNotFound)
	})

	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := s.Get(ctx, p+"k")
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("ping and close", func(t *testing.T) {
		t.Parallel()
		s, p := open(t)
		ctx := t.Context()
		require.NoError(t, s.Ping(ctx))
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "closing twice is harmless")
		_, err := s.Get(ctx, p+"k")
		require.ErrorIs(t, err, kv.ErrClosed)
		require.ErrorIs(t, s.Set(ctx, p+"k", nil, 0), kv.ErrClosed)
		require.ErrorIs(t, s.Ping(ctx), kv.ErrClosed)
	})
}

// gone waits until key has expired. Expiry is the behaviour under test, so the
// test waits for it rather than asserting how long it takes.
func gone(t *testing.T, s kv.Store, key string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := s.Get(t.Context(), key)
		return err != nil
	}, 10*time.Second, 5*time.Millisecond)
	_, err := s.Get(t.Context(), key)
	require.ErrorIs(t, err, kv.ErrNotFound)
}

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	mem, err := kv.Open(ctx, "")
	require.NoError(t, err)
	defer func() { require.NoError(t, mem.Close()) }()
	_, ok := kv.RedisClient(mem)
	require.False(t, ok, "an empty URL gives the in-process store")

	r, _ := openRedis(t)
	client, ok := kv.RedisClient(r)
	require.True(t, ok)
	require.NoError(t, client.Ping(ctx).Err())

	_, err = kv.Open(ctx, "http://cache:6379")
	require.ErrorContains(t, err, "unsupported URL")

	// Nothing listens on port 1; the error must not repeat the password.
	_, err = kv.Open(ctx, "redis://:hunter2@127.0.0.1:1/0?max_retries=-1")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")

	_, err = kv.Open(ctx, "redis://:hunter2@127.0.0.1:6379/notadb")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
}
