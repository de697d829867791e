// Package model2vec runs a static embedding model in the Model2Vec format, in
// pure Go: tokenise with the model's tokenizer.json, look up each token's row of
// the "embeddings" tensor in model.safetensors, average the rows and scale the
// mean to unit length.
//
// A model directory holds tokenizer.json, model.safetensors and optionally
// config.json. Newer exports may add a "weights" tensor (one scale per token)
// and a "mapping" tensor (token id → embedding row, for quantised
// vocabularies); both are honoured. The unknown token is dropped before
// pooling, as the reference implementation does, and texts are cut to the
// first MaxTokens tokens.
package model2vec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"unicode/utf8"

	"github.com/manushya-ai/manushya/pkg/embedder"
	"github.com/manushya-ai/manushya/pkg/embedder/safetensors"
	"github.com/manushya-ai/manushya/pkg/embedder/tokenizer"
)

// DefaultMaxTokens is how many tokens of a text are read, as in Model2Vec.
const DefaultMaxTokens = 512

// Model is a loaded static embedding model; it implements embedder.Provider.
type Model struct {
	name      string
	tok       *tokenizer.Tokenizer
	dims      int
	rows      int
	emb       []float32 // rows × dims, row-major
	weights   []float32 // per token id, or nil
	mapping   []int     // token id → row, or nil
	unk       int       // -1: none
	maxTokens int
	maxChars  int
}

// Options tune loading.
type Options struct {
	// Name is the model name reported to callers (default: the directory name).
	Name string
	// MaxTokens is how many tokens of a text are used (default 512).
	MaxTokens int
}

type configJSON struct {
	Normalize *bool `json:"normalize"`
}

// Load reads the model in dir.
func Load(dir string, opts Options) (*Model, error) {
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("model2vec %s: %w", dir, err)
	}
	st, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		return nil, fmt.Errorf("model2vec %s: %w", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "config.json")); err == nil {
		var cfg configJSON
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("model2vec %s: config.json: %w", dir, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("model2vec %s: %w", dir, err)
	}
	if opts.Name == "" {
		abs, _ := filepath.Abs(dir)
		opts.Name = filepath.Base(abs)
	}
	m, err := New(opts, tok, st)
	if err != nil {
		return nil, fmt.Errorf("model2vec %s: %w", dir, err)
	}
	return m, nil
}

// New builds a model from a parsed tokenizer and tensors.
func New(opts Options, tok *tokenizer.Tokenizer, st *safetensors.File) (*Model, error) {
	if opts.MaxTokens <= 0 {
		opts.MaxTokens = DefaultMaxTokens
	}
	t, ok := st.Tensors["embeddings"]
	if !ok {
		// Sentence Transformers' StaticEmbedding layout.
		t, ok = st.Tensors["embedding.weight"]
	}
	if !ok {
		return nil, errors.New(`model.safetensors has no "embeddings" tensor`)
	}
	if len(t.Shape) != 2 || t.Shape[0] == 0 || t.Shape[1] == 0 {
		return nil, fmt.Errorf("embeddings tensor has shape %v, want [rows, dims]", t.Shape)
	}
	emb, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	m := &Model{
		name: opts.Name, tok: tok, rows: t.Shape[0], dims: t.Shape[1], emb: emb,
		unk: -1, maxTokens: opts.MaxTokens,
	}
	vocab := tok.VocabSize()
	if mt, ok := st.Tensors["mapping"]; ok {
		if m.mapping, err = mt.Ints(); err != nil {
			return nil, err
		}
		if len(m.mapping) != vocab {
			return nil, fmt.Errorf("mapping has %d entries for %d tokens", len(m.mapping), vocab)
		}
		for id, row := range m.mapping {
			if row < 0 || row >= m.rows {
				return nil, fmt.Errorf("mapping sends token %d to row %d of %d", id, row, m.rows)
			}
		}
	} else if m.rows != vocab {
		return nil, fmt.Errorf("%d embedding rows for %d tokens", m.rows, vocab)
	}
	if wt, ok := st.Tensors["weights"]; ok {
		if m.weights, err = wt.Float32s(); err != nil {
			return nil, err
		}
		if len(m.weights) != vocab {
			return nil, fmt.Errorf("weights has %d entries for %d tokens", len(m.weights), vocab)
		}
	}
	if id, ok := tok.UnkID(); ok {
		m.unk = id
	}
	// Like the reference implementation, cut texts to MaxTokens times the
	// median token length in characters before tokenising, so huge texts cost
	// no more than needed.
	lens := make([]int, vocab)
	for i := range lens {
		lens[i] = utf8.RuneCountInString(tok.Token(i))
	}
	slices.Sort(lens)
	m.maxChars = m.maxTokens * max(lens[len(lens)/2], 1)
	return m, nil
}

// Model implements embedder.Provider.
func (m *Model) Model() embedder.Model {
	return embedder.Model{Name: m.name, Dimensions: m.dims, MaxInputTokens: m.maxTokens}
}

// Embed implements embedder.Provider.
func (m *Model) Embed(ctx context.Context, texts []string, dims int) (embedder.Result, error) {
	if dims != 0 && dims != m.dims {
		return embedder.Result{}, fmt.Errorf("%w: %s makes %d-dimensional vectors", embedder.ErrDimensions, m.name, m.dims)
	}
	res := embedder.Result{Vectors: make([][]float32, len(texts))}
	for i, text := range texts {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return embedder.Result{}, err
			}
		}
		v, n := m.embedOne(text)
		res.Vectors[i] = v
		res.PromptTokens += n
	}
	return res, nil
}

// Tokens returns the ids that embed text: unknown tokens dropped, cut to
// MaxTokens.
func (m *Model) Tokens(text string) []int {
	if utf8.RuneCountInString(text) > m.maxChars {
		text = cutRunes(text, m.maxChars)
	}
	ids := m.tok.Encode(text)
	if m.unk >= 0 {
		ids = slices.DeleteFunc(ids, func(id int) bool { return id == m.unk })
	}
	if len(ids) > m.maxTokens {
		ids = ids[:m.maxTokens]
	}
	return ids
}

func (m *Model) embedOne(text string) ([]float32, int) {
	ids := m.Tokens(text)
	v := make([]float32, m.dims)
	for _, id := range ids {
		row := id
		if m.mapping != nil {
			row = m.mapping[id]
		}
		w := float32(1)
		if m.weights != nil {
			w = m.weights[id]
		}
		r := m.emb[row*m.dims : (row+1)*m.dims]
		for k, x := range r {
			v[k] += w * x
		}
	}
	// The mean's direction is the sum's, so normalising the sum is enough.
	embedder.Normalize(v)
	return v, len(ids)
}

func cutRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}
