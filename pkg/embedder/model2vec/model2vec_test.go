package model2vec_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/embedder"
	"github.com/manushya-ai/manushya/pkg/embedder/embeddertest"
	"github.com/manushya-ai/manushya/pkg/embedder/model2vec"
	"github.com/manushya-ai/manushya/pkg/embedder/safetensors"
)

func unit(v ...float32) []float32 {
	embedder.Normalize(v)
	return v
}

func requireVector(t *testing.T, want, got []float32) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.InDelta(t, want[i], got[i], 1e-6, "component %d of %v", i, got)
	}
}

func TestKnownVectors(t *testing.T) {
	t.Parallel()
	m, err := model2vec.Load(embeddertest.WriteModel(t), model2vec.Options{Name: "tiny"})
	require.NoError(t, err)
	require.Equal(t, embedder.Model{Name: "tiny", Dimensions: 4, MaxInputTokens: 512}, m.Model())

	cases := []struct {
		text string
		want []float32
	}{
		{"hello world", unit(1, 1, 0, 0)},
		// Lowercased; "," and "!" are unknown and dropped; cats = cat + ##s.
		{"Hello, cats!", unit(1, 0, 1, 1)},
		{"unable", unit(3, 3, 0, 0)},
		// Accents stripped.
		{"Héllo", unit(1, 0, 0, 0)},
		// Punctuation split off: dog + "."
		{"dog.", unit(1, 1, 0, 2)},
		// Nothing known: the zero vector.
		{"zzz", []float32{0, 0, 0, 0}},
	}
	texts := make([]string, len(cases))
	for i, c := range cases {
		texts[i] = c.text
	}
	res, err := m.Embed(context.Background(), texts, 0)
	require.NoError(t, err)
	for i, c := range cases {
		requireVector(t, c.want, res.Vectors[i])
	}
	require.Equal(t, 2+3+2+1+2+0, res.PromptTokens)
	require.Equal(t, []int{5, 4}, m.Tokens("cats"))

	_, err = m.Embed(context.Background(), []string{"x"}, 8)
	require.ErrorIs(t, err, embedder.ErrDimensions)
}

func TestMaxTokensTruncates(t *testing.T) {
	t.Parallel()
	m, err := model2vec.Load(embeddertest.WriteModel(t), model2vec.Options{MaxTokens: 3})
	require.NoError(t, err)
	// Only the first three tokens are read (and, as in the reference, only the
	// first 3 × 5 characters, 5 being the median token length).
	res, err := m.Embed(context.Background(), []string{"hello world cat dog dog", "cat cat hello . . . . world"}, 0)
	require.NoError(t, err)
	requireVector(t, unit(1, 1, 0, 1), res.Vectors[0])
	requireVector(t, unit(1, 0, 0, 2), res.Vectors[1])
}

// TestWeightsMappingAndHalfPrecision loads the layout of newer exports: F16
// embeddings, a per-token weight and a token → row mapping.
func TestWeightsMappingAndHalfPrecision(t *testing.T) {
	t.Parallel()
	dir := embeddertest.WriteModel(t)
	n := len(embeddertest.Vocab)
	// Two distinct rows; every token maps to row 0 except "world" (row 1).
	rows := []float32{1, 0, 0, 0, 0, 1, 0, 0}
	half := make([]byte, 2*len(rows))
	for i, v := range rows {
		binary.LittleEndian.PutUint16(half[2*i:], map[float32]uint16{0: 0, 1: 0x3c00}[v])
	}
	mapping := make([]byte, 8*n)
	weights := make([]float32, n)
	for i := range n {
		row := 0
		if embeddertest.Vocab[i] == "world" {
			row = 1
		}
		binary.LittleEndian.PutUint64(mapping[8*i:], uint64(row))
		weights[i] = 1
	}
	weights[3] = 3 // "world"
	b, err := safetensors.Encode(map[string]safetensors.Tensor{
		"embeddings": {DType: safetensors.F16, Shape: []int{2, 4}, Data: half},
		"mapping":    {DType: safetensors.I64, Shape: []int{n}, Data: mapping},
		"weights":    safetensors.F32Tensor([]int{n}, weights),
	})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "model.safetensors"), b, 0o600))

	m, err := model2vec.Load(dir, model2vec.Options{})
	require.NoError(t, err)
	res, err := m.Embed(context.Background(), []string{"hello world"}, 0)
	require.NoError(t, err)
	requireVector(t, unit(1, 3, 0, 0), res.Vectors[0])
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	_, err := model2vec.Load(t.TempDir(), model2vec.Options{})
	require.Error(t, err)

	dir := embeddertest.WriteModel(t)
	b, err := safetensors.Encode(map[string]safetensors.Tensor{
		"embeddings": safetensors.F32Tensor([]int{3, 4}, make([]float32, 12)),
	})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "model.safetensors"), b, 0o600))
	_, err = model2vec.Load(dir, model2vec.Options{})
	require.ErrorContains(t, err, "3 embedding rows for 10 tokens")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte("garbage!garbage!"), 0o600))
	_, err = model2vec.Load(dir, model2vec.Options{})
	require.ErrorIs(t, err, safetensors.ErrFormat)
}

func BenchmarkEmbed(b *testing.B) {
	m, err := model2vec.Load(embeddertest.WriteModel(b), model2vec.Options{})
	require.NoError(b, err)
	texts := []string{"Hello world, the cats and dogs are unable to sleep.", "hello cats"}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = m.Embed(context.Background(), texts, 0)
	}
	b.ReportMetric(float64(b.N*len(texts))/b.Elapsed().Seconds(), "texts/s")
}
