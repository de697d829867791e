package keyring

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// cachedKeyring is a keyring with one identity scope's key in its cache and no
// database: everything the fuzz test opens is decided in memory.
func cachedKeyring(t testing.TB) (*Keyring, Ref, []byte) {
	t.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	require.NoError(t, err)
	a, err := aead.New(h)
	require.NoError(t, err)
	dk := &dataKey{id: h.KeysetInfo().GetPrimaryKeyId(), aead: a}
	k := &Keyring{names: map[string]nameInfo{"f": {kind: KindIdentity}}, cache: newCache(time.Hour, 10)}
	ref := Ref{Field: "f", Scope: Identity(uuid.New(), uuid.New()), Row: []byte("row")}
	// Loaded "in the future", so no reload is ever attempted.
	k.cache.put(ref.Scope, &scopeKeys{primary: dk, primaryID: dk.id, keys: map[uint32]*dataKey{dk.id: dk},
		destroyed: map[uint32]bool{}, unusable: map[uint32]error{}, loaded: time.Now().Add(time.Hour)})
	c, err := k.Seal(context.Background(), ref, []byte("the secret"))
	if err != nil {
		// Seal records the fields first; there are none to record here.
		t.Fatalf("seal: %v", err)
	}
	return k, ref, c
}

func FuzzParse(f *testing.F) {
	k, ref, valid := cachedKeyring(f)
	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte{magic})
	f.Add([]byte{magic, KindTenant, tinkPrefix, 0, 0, 0, 1})
	f.Add(append([]byte{magic, 9}, valid[2:]...))
	f.Add([]byte{1, 4, 'k', 'e', 'k', '1'}) // the secretbox format
	f.Add([]byte{0, 'p', 'l', 'a', 'i', 'n'})
	f.Fuzz(func(t *testing.T, c []byte) {
		h, ok := Parse(c)
		if ok {
			require.GreaterOrEqual(t, len(c), Overhead)
			require.Equal(t, magic, c[0])
			require.LessOrEqual(t, h.Kind, KindIdentity)
		}
		require.Equal(t, ok, IsSealed(c))
		p, err := k.Open(context.Background(), ref, c)
		if err == nil {
			// Only the genuine ciphertext opens: AES-GCM admits no forgery.
			require.True(t, bytes.Equal(c, valid), "opened a value that was never sealed")
			require.Equal(t, "the secret", string(p))
		} else {
			require.ErrorIs(t, err, ErrOpen)
		}
	})
}

func TestAssociatedDataIsUnambiguous(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	a := associatedData(KindTenant, Ref{Field: "ab", Scope: Tenant(tenant), Row: []byte("c")})
	b := associatedData(KindTenant, Ref{Field: "a", Scope: Tenant(tenant), Row: []byte("bc")})
	require.NotEqual(t, a, b)
	require.NotEqual(t, wrapAD(Tenant(tenant), 1), wrapAD(Tenant(tenant), 2))
}
