package secretbox_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/secretbox"
)

func box(t *testing.T, id string, fill byte) *secretbox.Box {
	t.Helper()
	b, err := secretbox.New(id, bytes.Repeat([]byte{fill}, 32))
	require.NoError(t, err)
	return b
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	b := box(t, "k1", 1)
	c, err := b.Seal([]byte("seed"), []byte("row-1"))
	require.NoError(t, err)
	require.NotContains(t, string(c), "seed")
	p, err := b.Open(c, []byte("row-1"))
	require.NoError(t, err)
	require.Equal(t, "seed", string(p))

	c2, err := b.Seal([]byte("seed"), []byte("row-1"))
	require.NoError(t, err)
	require.NotEqual(t, c, c2, "nonces are random")
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	b := box(t, "k1", 1)
	c, err := b.Seal([]byte("seed"), []byte("row-1"))
	require.NoError(t, err)

	_, err = b.Open(c, []byte("row-2"))
	require.ErrorIs(t, err, secretbox.ErrOpen, "other associated data")
	tampered := bytes.Clone(c)
	tampered[len(tampered)-1] ^= 1
	_, err = b.Open(tampered, []byte("row-1"))
	require.ErrorIs(t, err, secretbox.ErrOpen)
	_, err = box(t, "k1", 2).Open(c, []byte("row-1"))
	require.ErrorIs(t, err, secretbox.ErrOpen, "other key, same id")
	_, err = box(t, "k2", 1).Open(c, []byte("row-1"))
	require.ErrorIs(t, err, secretbox.ErrOpen, "other key id")
	for _, short := range [][]byte{nil, {1}, c[:5]} {
		_, err = b.Open(short, nil)
		require.ErrorIs(t, err, secretbox.ErrOpen)
	}
}

func TestKeyringRotation(t *testing.T) {
	t.Parallel()
	old, cur := box(t, "k1", 1), box(t, "k2", 2)
	c1, err := old.Seal([]byte("a"), nil)
	require.NoError(t, err)
	ring := secretbox.NewKeyring(cur, old)
	p, err := ring.Open(c1, nil)
	require.NoError(t, err)
	require.Equal(t, "a", string(p))
	require.True(t, ring.NeedsRotation(c1))
	c2, err := ring.Seal([]byte("b"), nil)
	require.NoError(t, err)
	require.False(t, ring.NeedsRotation(c2))
	id, ok := secretbox.KeyID(c2)
	require.True(t, ok)
	require.Equal(t, "k2", id)
}

func TestNewAndParseKey(t *testing.T) {
	t.Parallel()
	_, err := secretbox.New("k", make([]byte, 16))
	require.Error(t, err)
	_, err = secretbox.New("", make([]byte, 32))
	require.Error(t, err)
	k, err := secretbox.ParseKey("0001020304050607080910111213141516171819202122232425262728293031")
	require.NoError(t, err)
	require.Len(t, k, 32)
	_, err = secretbox.ParseKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	require.NoError(t, err)
	_, err = secretbox.ParseKey("short")
	require.Error(t, err)
}
