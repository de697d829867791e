package hashing

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func cosine(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestEmbedShapeAndNorm(t *testing.T) {
	t.Parallel()
	e := New(384)
	require.Equal(t, 384, e.Dimensions())
	require.Equal(t, "hashing-v1-384", e.Model())
	vs := e.Embed([]string{"I love hiking in the Alps", "", "!!!"})
	require.Len(t, vs, 3)
	var n float64
	for _, x := range vs[0] {
		n += float64(x) * float64(x)
	}
	require.InDelta(t, 1.0, math.Sqrt(n), 1e-5)
	for _, v := range vs[1:] {
		require.Len(t, v, 384)
		for _, x := range v {
			require.Zero(t, x)
		}
	}
	require.Equal(t, 768, New(768).Dimensions())
	require.Equal(t, DefaultDimensions, New(0).Dimensions())
}

func TestEmbedDeterministic(t *testing.T) {
	t.Parallel()
	a := New(384).Embed([]string{"Favourite colour is blue"})
	b := New(384).Embed([]string{"favourite COLOUR is blue"})
	require.Equal(t, a, b)
}

func TestEmbedSimilarity(t *testing.T) {
	t.Parallel()
	e := New(384)
	v := e.Embed([]string{
		"Alice enjoys hiking in the mountains on weekends",
		"On weekends Alice likes to hike in the mountains",
		"The quarterly tax report is due next Tuesday",
	})
	require.Greater(t, cosine(v[0], v[1]), cosine(v[0], v[2])+0.2)
	require.InDelta(t, 1.0, cosine(v[0], v[0]), 1e-5)
}

func TestTokenize(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"dont", "touch", "café", "münchen", "東京", "42"},
		Tokenize("Don't touch: Café-MÜNCHEN, 東京 42!"))
	require.Empty(t, Tokenize(" \t.,"))
}

func BenchmarkEmbed(b *testing.B) {
	e := New(384)
	texts := []string{
		"User prefers dark mode and concise answers in the morning",
		"The meeting with the design team moved to Thursday at 3pm",
		"Allergic to peanuts; avoid recommending Thai satay",
		"Lives in Lisbon, works remotely for a Berlin startup",
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Embed(texts)
	}
}
