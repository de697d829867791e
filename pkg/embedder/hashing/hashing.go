// Package hashing is a deterministic, dependency-free text embedder based on
// signed feature hashing. It needs no model weights, so it serves as the
// default embedder for development, tests and benchmarks.
//
// Features per text:
//   - word unigrams and bigrams of the lower-cased, Unicode-aware token stream;
//   - character 3-, 4- and 5-grams of every word padded with boundary marks,
//     which makes the embedding tolerant of inflection and typos.
//
// Common English function words are kept at a tenth of the weight of other
// words and contribute no character n-grams.
//
// Each feature is hashed with 64-bit FNV-1a; the low bits pick the dimension
// and one high bit picks the sign (signed hashing keeps collisions unbiased).
// Counts are damped with sublinear tf (1 + ln tf) and the vector is
// L2-normalised, so cosine similarity equals the dot product.
package hashing

import (
	"fmt"
	"math"
	"strings"
	"unicode"
)

// DefaultDimensions is the dimensionality used across Manushya by default.
const DefaultDimensions = 384

// Feature weights: word features carry more signal than character n-grams,
// of which there are many per word.
const (
	unigramWeight = 1.0
	bigramWeight  = 0.7
	charWeight    = 0.35
	stopWeight    = 0.1
)

// stopwords are frequent English function words, down-weighted.
var stopwords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a an the and or but if of at by for with about to from in on into over
	is are was were be been being am do does did have has had having will would can could should may might must
	i me my we our you your he him his she her it its they them their this that these those there here
	what which who whom whose when where why how not no so than too very just also as up out then`) {
		m[w] = true
	}
	return m
}()

// Embedder turns texts into fixed-size, L2-normalised vectors. It is
// stateless and safe for concurrent use.
type Embedder struct {
	dims int
}

// New returns an embedder producing vectors of dims dimensions; dims <= 0
// selects DefaultDimensions.
func New(dims int) *Embedder {
	if dims <= 0 {
		dims = DefaultDimensions
	}
	return &Embedder{dims: dims}
}

// Model names the embedding scheme and its size, e.g. "hashing-v1-384".
// Vectors from different model names are not comparable.
func (e *Embedder) Model() string { return fmt.Sprintf("hashing-v1-%d", e.dims) }

// Dimensions is the length of every vector Embed returns.
func (e *Embedder) Dimensions() int { return e.dims }

// Embed returns one vector per text, in order. An empty text (or one with no
// letters or digits) maps to the zero vector.
func (e *Embedder) Embed(texts []string) [][]float32 {
	out := make([][]float32, len(texts))
	acc := make(map[uint64]feature, 256)
	for i, t := range texts {
		out[i] = e.embedOne(t, acc)
		clear(acc)
	}
	return out
}

// EmbedOne embeds a single text.
func (e *Embedder) EmbedOne(text string) []float32 {
	return e.embedOne(text, make(map[uint64]feature, 256))
}

// feature is one hashed feature's weight and term frequency.
type feature struct {
	weight float64
	tf     float64
}

func add(counts map[uint64]feature, h uint64, w float64) {
	f := counts[h]
	f.weight = w
	f.tf++
	counts[h] = f
}

func (e *Embedder) embedOne(text string, counts map[uint64]feature) []float32 {
	words := Tokenize(text)
	// Namespacing by a kind byte keeps a unigram "abc" apart from the
	// trigram "abc".
	for i, w := range words {
		stop := stopwords[w]
		if stop {
			// Function words carry little meaning but occur everywhere; at full
			// weight they dominate short texts such as questions.
			add(counts, hash('w', w, ""), stopWeight)
		} else {
			add(counts, hash('w', w, ""), unigramWeight)
			addCharGrams(counts, w)
		}
		if i > 0 && (!stop || !stopwords[words[i-1]]) {
			add(counts, hash('b', words[i-1], w), bigramWeight)
		}
	}
	vec := make([]float32, e.dims)
	if len(counts) == 0 {
		return vec
	}
	acc := make([]float64, e.dims)
	d := uint64(e.dims)
	for h, f := range counts {
		v := f.weight * (1 + math.Log(f.tf)) // sublinear tf
		if h>>63 == 1 {
			v = -v
		}
		acc[(h&(1<<63-1))%d] += v
	}
	var norm float64
	for _, v := range acc {
		norm += v * v
	}
	if norm == 0 {
		return vec
	}
	inv := 1 / math.Sqrt(norm)
	for i, v := range acc {
		vec[i] = float32(v * inv)
	}
	return vec
}

func addCharGrams(counts map[uint64]feature, w string) {
	r := make([]rune, 0, len(w)+2)
	r = append(r, '<')
	r = append(r, []rune(w)...)
	r = append(r, '>')
	for n := 3; n <= 5; n++ {
		for i := 0; i+n <= len(r); i++ {
			add(counts, hash('c', string(r[i:i+n]), ""), charWeight)
		}
	}
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hash is 64-bit FNV-1a over kind, a, a separator and b.
func hash(kind byte, a, b string) uint64 {
	h := uint64(fnvOffset)
	h ^= uint64(kind)
	h *= fnvPrime
	for i := 0; i < len(a); i++ {
		h ^= uint64(a[i])
		h *= fnvPrime
	}
	if b != "" {
		h ^= 0x1f
		h *= fnvPrime
		for i := 0; i < len(b); i++ {
			h ^= uint64(b[i])
			h *= fnvPrime
		}
	}
	// Final avalanche so that the top (sign) bit depends on every byte.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// Tokenize lower-cases text and splits it into words made of letters, digits
// and marks (so accented and non-Latin scripts survive); apostrophes inside a
// word are dropped ("don't" -> "dont").
func Tokenize(text string) []string {
	var words []string
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			words = append(words, b.String())
			b.Reset()
		}
	}
	for _, r := range text {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(unicode.ToLower(r))
		case (r == '\'' || r == '’') && b.Len() > 0:
			// elide
		default:
			flush()
		}
	}
	flush()
	return words
}
