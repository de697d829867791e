package kv

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// janitorInterval is how often the in-process store drops expired keys. Reads
// already ignore expired keys; the sweep only bounds memory held by keys nobody
// reads again.
const janitorInterval = time.Minute

type entry struct {
	value   []byte
	expires time.Time // zero: never
}

func (e entry) expired(now time.Time) bool {
	return !e.expires.IsZero() && !now.Before(e.expires)
}

type memoryStore struct {
	mu     sync.Mutex
	data   map[string]entry
	closed bool

	stop chan struct{}
	done chan struct{}
}

// NewMemory returns an in-process Store, safe for concurrent use. Its state is
// private to the process, so it only suits a single-process deployment. Close
// stops its background sweeper.
func NewMemory() Store {
	s := &memoryStore{
		data: make(map[string]entry),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.janitor(janitorInterval)
	return s
}

func (s *memoryStore) janitor(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.sweep(time.Now())
		case <-s.stop:
			return
		}
	}
}

func (s *memoryStore) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.data {
		if e.expired(now) {
			delete(s.data, k)
		}
	}
}

// lookup returns the live entry for key; the caller holds s.mu.
func (s *memoryStore) lookup(key string, now time.Time) (entry, bool) {
	e, ok := s.data[key]
	if !ok {
		return entry{}, false
	}
	if e.expired(now) {
		delete(s.data, key)
		return entry{}, false
	}
	return e, true
}

func expiry(now time.Time, ttl time.Duration) time.Time {
	if ttl == 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}

// begin checks the call may proceed and locks the store; the caller unlocks.
func (s *memoryStore) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	return nil
}

func (s *memoryStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	e, ok := s.lookup(key, time.Now())
	if !ok {
		return nil, ErrNotFound
	}
	return clone(e.value), nil
}

func (s *memoryStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.data[key] = entry{value: clone(value), expires: expiry(time.Now(), ttl)}
	return nil
}

func (s *memoryStore) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := checkTTL(ttl); err != nil {
		return false, err
	}
	if err := s.begin(ctx); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	now := time.Now()
	if _, ok := s.lookup(key, now); ok {
		return false, nil
	}
	s.data[key] = entry{value: clone(value), expires: expiry(now, ttl)}
	return true, nil
}

func (s *memoryStore) Delete(ctx context.Context, keys ...string) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.data, k)
	}
	return nil
}

func (s *memoryStore) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if err := checkTTL(ttl); err != nil {
		return 0, err
	}
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	now := time.Now()
	e, ok := s.lookup(key, now)
	if !ok {
		s.data[key] = entry{value: []byte("1"), expires: expiry(now, ttl)}
		return 1, nil
	}
	// Redis stores counters as decimal strings; doing the same keeps Get's
	// result identical across the two stores.
	n, err := strconv.ParseInt(string(e.value), 10, 64)
	if err != nil || n == math.MaxInt64 {
		return 0, fmt.Errorf("kv: incr %s: %w", key, ErrNotInteger)
	}
	n++
	e.value = strconv.AppendInt(nil, n, 10)
	s.data[key] = e
	return n, nil
}

func (s *memoryStore) Ping(ctx context.Context) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

func (s *memoryStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.data = nil
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append([]byte(nil), b...)
}
