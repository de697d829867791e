package pagination

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/apierr"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	fp := Fingerprint("admin", 3)
	tok := Encode("0190-cursor", fp)
	cur, err := Decode(tok, fp)
	require.NoError(t, err)
	require.Equal(t, "0190-cursor", cur)

	cur, err = Decode("", fp)
	require.NoError(t, err)
	require.Empty(t, cur)
}

func TestRejectsForeignTokens(t *testing.T) {
	t.Parallel()
	tok := Encode("c", Fingerprint("a"))
	for _, bad := range []string{"%%%", "bm90IGpzb24", tok} {
		_, err := Decode(bad, Fingerprint("b"))
		require.Error(t, err, bad)
		require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN, apierr.ReasonOf(err))
	}
}

func TestSize(t *testing.T) {
	t.Parallel()
	require.EqualValues(t, DefaultPageSize, Size(0))
	require.EqualValues(t, 7, Size(7))
	require.EqualValues(t, MaxPageSize, Size(5000))
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode("x", "q"), "q")
	f.Add("", "q")
	f.Add("eyJjIjoiIn0", "")
	f.Fuzz(func(t *testing.T, tok, fp string) {
		cur, err := Decode(tok, fp)
		if err == nil && tok != "" && cur == "" {
			t.Fatalf("accepted token %q with empty cursor", tok)
		}
	})
}

func TestDecodeUUID(t *testing.T) {
	t.Parallel()
	fp := Fingerprint("rows")
	id, err := DecodeUUID("", fp)
	require.NoError(t, err)
	require.Nil(t, id, "the first page has no cursor")

	want := "01a21409-cd96-736d-b0b6-c852e218836f"
	id, err = DecodeUUID(Encode(want, fp), fp)
	require.NoError(t, err)
	require.Equal(t, want, id.String())

	_, err = DecodeUUID(Encode("not-a-uuid", fp), fp)
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN, apierr.ReasonOf(err))
}
