package identity

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestArgon2RoundTripAndRehash(t *testing.T) {
	t.Parallel()
	h := newHasher(1, 4)
	ctx := context.Background()
	enc, err := h.hashPassword(ctx, "a long enough passphrase")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$"))
	ok, rehash, err := h.verifyPassword(ctx, enc, "a long enough passphrase")
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, rehash)
	ok, _, err = h.verifyPassword(ctx, enc, "a long enough passphrasE")
	require.NoError(t, err)
	require.False(t, ok)

	// Weaker parameters verify and ask for a rehash.
	weak := strings.Replace(enc, "m=19456,t=2", "m=8192,t=1", 1)
	ok, rehash, err = h.verifyPassword(ctx, weak, "a long enough passphrase")
	require.NoError(t, err)
	require.False(t, ok, "other parameters give another key")
	require.False(t, rehash)
}

func TestParseArgon2RefusesHostileParameters(t *testing.T) {
	t.Parallel()
	for _, enc := range []string{
		"$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=19456,t=999,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=16$m=19456,t=2,p=1$c2FsdA$a2V5",
		"$argon2id$v=19$m=19456,t=2,p=0$c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA",
		"$argon2id$",
	} {
		_, err := parseArgon2(enc)
		require.Error(t, err, enc)
	}
	_, _, err := newHasher(1, 1).verifyPassword(context.Background(), "plaintext", "x")
	require.Error(t, err)
}

func TestHasherShedsLoadPastItsQueue(t *testing.T) {
	t.Parallel()
	h := newHasher(1, 2)
	release := make(chan struct{})
	started := make(chan struct{})
	go func() {
		_ = h.run(context.Background(), func() { close(started); <-release })
	}()
	<-started
	// One more caller fits the queue and waits; the next is turned away at once.
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { waiting <- h.run(ctx, func() {}) }()
	require.Eventually(t, func() bool { return h.waiting.Load() == 2 }, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, h.run(context.Background(), func() {}), errHasherBusy)
	cancel()
	require.ErrorIs(t, <-waiting, context.Canceled)
	close(release)
}

func TestPasswordPolicy(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "short", "password", "Password1234", "P@ssw0rd2024!!", "qwertyuiop12", "1234567890123", "abcabcabcabc", "zzzzzzzzzzzzzz", "iloveyou!!!!"} {
		require.Error(t, checkPasswordPolicy("new_password", bad, 0), bad)
	}
	for _, good := range []string{"correct horse battery staple", "tr0ub4dor&3-extended", "日本語のパスフレーズです"} {
		require.NoError(t, checkPasswordPolicy("new_password", good, 0), good)
	}
	require.Error(t, checkPasswordPolicy("new_password", "twelve chars", 20))
	require.Error(t, checkPasswordPolicy("new_password", strings.Repeat("ab1", 400), 0), "over the byte cap")
	require.Greater(t, len(commonPasswords()), 2000)
}

func TestLockDelayGrows(t *testing.T) {
	t.Parallel()
	require.Zero(t, lockDelay(4, 5))
	require.Equal(t, time.Second, lockDelay(5, 5))
	require.Equal(t, 2*time.Second, lockDelay(6, 5))
	require.Equal(t, 8*time.Second, lockDelay(8, 5))
	require.Equal(t, 15*time.Minute, lockDelay(40, 5))
}

func FuzzParseRefreshToken(f *testing.F) {
	tok, _, err := newRefreshToken()
	require.NoError(f, err)
	f.Add(tok)
	f.Add("mrt_")
	f.Add("mrt_!!!!")
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := parseRefreshToken(s)
		if ok {
			require.Len(t, h, 32)
			require.True(t, strings.HasPrefix(s, refreshTokenPrefix))
		}
	})
}
