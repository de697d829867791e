package embedder

import (
	"context"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
)

// Kind is the kind of a provider.
type Kind string

// Provider kinds.
const (
	KindOpenAI  Kind = "openai_compatible"
	KindLocal   Kind = "local"
	KindHashing Kind = "hashing"
)

// Model describes the one model a provider serves.
type Model struct {
	// Name is the model's name as callers pass it; unique within a Router.
	Name string
	// Dimensions is the length of its vectors by default.
	Dimensions int
	// DimensionsConfigurable reports whether shorter vectors may be asked for.
	DimensionsConfigurable bool
	// MaxInputTokens is the most tokens of one text it reads (longer texts are
	// truncated); 0 when unknown.
	MaxInputTokens int
}

// Result is a provider's answer: one vector per text, in order.
type Result struct {
	Vectors [][]float32
	// PromptTokens counts the tokens read, as the provider reports them, or an
	// estimate for providers that do not count.
	PromptTokens int
}

// Provider embeds texts with one model. Implementations are safe for concurrent
// use. Embed gets 1 or more texts and dims, the vector length wanted (0: the
// model's own); it returns exactly one vector of that length per text.
type Provider interface {
	Model() Model
	Embed(ctx context.Context, texts []string, dims int) (Result, error)
}

// ErrRejected marks a provider's refusal of the input itself (HTTP 400, 413, 422
// from an API): retrying or failing over would not help, and the provider is not
// unhealthy, so it does not count against its circuit breaker.
var ErrRejected = errors.New("embedder: input rejected by the provider")

// ErrDimensions is returned when dims cannot be served by the model.
var ErrDimensions = errors.New("embedder: dimensions not supported by the model")

// EstimateTokens estimates the tokens of a text for providers that do not count
// them, with the usual four-characters-per-token rule of thumb.
func EstimateTokens(text string) int {
	n := utf8.RuneCountInString(text)
	return (n + 3) / 4
}

// Normalize scales v to unit length in place; a zero vector stays zero.
func Normalize(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
}

// Hashing wraps the feature-hashing embedder as a Provider.
func Hashing(dims int) Provider { return hashingProvider{e: hashing.New(dims)} }

type hashingProvider struct{ e *hashing.Embedder }

func (h hashingProvider) Model() Model {
	return Model{Name: h.e.Model(), Dimensions: h.e.Dimensions()}
}

func (h hashingProvider) Embed(ctx context.Context, texts []string, dims int) (Result, error) {
	if dims != 0 && dims != h.e.Dimensions() {
		return Result{}, fmt.Errorf("%w: %s makes %d-dimensional vectors", ErrDimensions, h.e.Model(), h.e.Dimensions())
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	tokens := 0
	for _, t := range texts {
		tokens += EstimateTokens(t)
	}
	return Result{Vectors: h.e.Embed(texts), PromptTokens: tokens}, nil
}
