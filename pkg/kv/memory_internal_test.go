package kv

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The sweep frees expired keys that nobody reads again; reads alone never would.
func TestMemorySweep(t *testing.T) {
	t.Parallel()
	s := NewMemory().(*memoryStore)
	defer func() { require.NoError(t, s.Close()) }()
	ctx := t.Context()
	require.NoError(t, s.Set(ctx, "short", []byte("x"), time.Second))
	require.NoError(t, s.Set(ctx, "forever", []byte("x"), 0))

	s.sweep(time.Now().Add(time.Hour))

	s.mu.Lock()
	defer s.mu.Unlock()
	require.NotContains(t, s.data, "short")
	require.Contains(t, s.data, "forever")
}
