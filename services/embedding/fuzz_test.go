package embedding_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/services/embedding"
)

// FuzzEmbed: whatever the texts, model and dimensions, Embed answers or refuses
// with INVALID_ARGUMENT, never an internal error, and answers one vector per
// text.
func FuzzEmbed(f *testing.F) {
	mod, err := embedding.New(embedding.Config{MaxTextChars: 64, MaxTexts: 4}, embedding.Deps{})
	require.NoError(f, err)
	svc := mod.Service()
	f.Add("hello world", "", "", 0)
	f.Add("", " ", "hashing-v1-384", 384)
	f.Add("\xff\xfe", "ok", "gpt", -3)
	f.Add("!!!", "a\u0000b", "", 1<<20)
	f.Fuzz(func(t *testing.T, a, b, model string, dims int) {
		texts := []string{a}
		if b != "" {
			texts = append(texts, b, a)
		}
		out, err := svc.Embed(context.Background(), texts, model, dims)
		if err != nil {
			st, internal := apierr.ToStatus(err)
			require.False(t, internal, err.Error())
			require.Equal(t, codes.InvalidArgument, st.Code(), err.Error())
			return
		}
		require.Len(t, out.Vectors, len(texts))
		for _, v := range out.Vectors {
			require.Len(t, v, out.Dimensions)
		}
	})
}
