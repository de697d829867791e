package embeddertest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/manushya-ai/manushya/pkg/embedder/safetensors"
)

// Vocab is the WordPiece vocabulary of the model WriteModel writes; Rows holds
// each token's embedding row (4 dimensions), in id order.
var (
	Vocab = []string{"[PAD]", "[UNK]", "hello", "world", "##s", "cat", "dog", ".", "un", "##able"}
	Rows  = [][]float32{
		{0, 0, 0, 0},
		{9, 9, 9, 9}, // the unknown token: never pooled
		{1, 0, 0, 0},
		{0, 1, 0, 0},
		{0, 0, 1, 0},
		{0, 0, 0, 1},
		{1, 1, 0, 0},
		{0, 0, 0, 2},
		{3, 0, 0, 0},
		{0, 3, 0, 0},
	}
)

// WriteModel writes a tiny Model2Vec model (a BERT-style WordPiece tokenizer,
// 4-dimensional F32 embeddings) to a new directory and returns it.
func WriteModel(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	vocab := map[string]int{}
	for i, tok := range Vocab {
		vocab[tok] = i
	}
	tok := map[string]any{
		"version":      "1.0",
		"added_tokens": []any{map[string]any{"id": 0, "content": "[PAD]", "special": true}, map[string]any{"id": 1, "content": "[UNK]", "special": true}},
		"normalizer": map[string]any{
			"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
			"strip_accents": nil, "lowercase": true,
		},
		"pre_tokenizer": map[string]any{"type": "BertPreTokenizer"},
		"model": map[string]any{
			"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
			"max_input_chars_per_word": 100, "vocab": vocab,
		},
	}
	b, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "tokenizer.json"), b)
	flat := make([]float32, 0, len(Rows)*4)
	for _, r := range Rows {
		flat = append(flat, r...)
	}
	st, err := safetensors.Encode(map[string]safetensors.Tensor{
		"embeddings": safetensors.F32Tensor([]int{len(Rows), 4}, flat),
	})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "model.safetensors"), st)
	write(t, filepath.Join(dir, "config.json"), []byte(`{"model_type":"model2vec","normalize":true,"hidden_dim":4}`))
	return dir
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
