// Package tokenizer runs the subset of Hugging Face tokenizer.json files that
// static embedding models (Model2Vec) ship: WordPiece, Unigram and WordLevel
// models, the BERT, Unicode, lowercase, strip, replace and prepend normalizers,
// and the BERT, whitespace, punctuation, digits and Metaspace pre-tokenizers.
//
// Only token ids are produced, without special tokens: that is all an embedding
// lookup needs. Components outside the subset make Parse fail with an error
// naming them, so a model is never silently tokenised wrongly. One
// approximation: the SentencePiece "Precompiled" normaliser is run as NFKC,
// which is what its character map mostly encodes.
package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"unicode/utf8"
)

// ErrFormat is matched by every error about a malformed or unsupported file.
var ErrFormat = errors.New("tokenizer: unsupported or malformed tokenizer.json")

// Tokenizer turns text into token ids. It is safe for concurrent use.
type Tokenizer struct {
	normalize func(string) string
	pretok    func(string) []string
	model     model
	tokens    []string
	unkID     int
}

type model interface {
	// encode appends the ids of one pre-token to out.
	encode(word string, out []int) []int
}

type fileJSON struct {
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Model        json.RawMessage `json:"model"`
}

// Load reads the tokenizer.json at path.
func Load(path string) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return Parse(b)
}

// Parse reads a tokenizer.json document.
func Parse(b []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	t := &Tokenizer{unkID: -1}
	var err error
	if t.normalize, err = parseNormalizer(f.Normalizer, 0); err != nil {
		return nil, err
	}
	if t.pretok, err = parsePreTokenizer(f.PreTokenizer, 0); err != nil {
		return nil, err
	}
	if err := t.parseModel(f.Model); err != nil {
		return nil, err
	}
	return t, nil
}

// Encode returns the token ids of text, without special tokens.
func (t *Tokenizer) Encode(text string) []int {
	if !utf8.ValidString(text) {
		text = toValidUTF8(text)
	}
	text = t.normalize(text)
	ids := make([]int, 0, len(text)/4+1)
	for _, w := range t.pretok(text) {
		if w != "" {
			ids = t.model.encode(w, ids)
		}
	}
	return ids
}

// UnkID returns the id of the unknown token, if the model has one.
func (t *Tokenizer) UnkID() (int, bool) { return t.unkID, t.unkID >= 0 }

// VocabSize is the number of token ids.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// Token returns the string of id.
func (t *Tokenizer) Token(id int) string { return t.tokens[id] }

// maxDepth bounds nested Sequence components, so hostile files cannot exhaust
// the stack.
const maxDepth = 8

func toValidUTF8(s string) string {
	b := make([]rune, 0, len(s))
	for _, r := range s {
		b = append(b, r) // invalid bytes decode as U+FFFD
	}
	return string(b)
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   json.RawMessage `json:"vocab"`
	UnkToken                *string         `json:"unk_token"`
	UnkID                   *int            `json:"unk_id"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	MaxInputCharsPerWord    *int            `json:"max_input_chars_per_word"`
	ByteFallback            bool            `json:"byte_fallback"`
}

func (t *Tokenizer) parseModel(raw json.RawMessage) error {
	var m modelJSON
	if len(raw) == 0 || string(raw) == "null" {
		return fmt.Errorf("%w: no model", ErrFormat)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%w: model: %w", ErrFormat, err)
	}
	if m.Type == "" {
		// Old files omit the type; the vocab's shape tells.
		if len(m.Vocab) > 0 && m.Vocab[0] == '[' {
			m.Type = "Unigram"
		} else {
			m.Type = "WordPiece"
		}
	}
	switch m.Type {
	case "WordPiece", "WordLevel":
		vocab := map[string]int{}
		if err := json.Unmarshal(m.Vocab, &vocab); err != nil {
			return fmt.Errorf("%w: %s vocab must map tokens to ids: %w", ErrFormat, m.Type, err)
		}
		if err := t.setTokens(vocab); err != nil {
			return err
		}
		unk := "[UNK]"
		if m.UnkToken != nil {
			unk = *m.UnkToken
		}
		if id, ok := vocab[unk]; ok {
			t.unkID = id
		}
		if m.Type == "WordLevel" {
			t.model = &wordLevel{vocab: vocab, unk: t.unkID}
			return nil
		}
		wp := &wordPiece{vocab: vocab, unk: t.unkID, prefix: "##", maxChars: 100}
		if m.ContinuingSubwordPrefix != nil {
			wp.prefix = *m.ContinuingSubwordPrefix
		}
		if m.MaxInputCharsPerWord != nil {
			wp.maxChars = *m.MaxInputCharsPerWord
		}
		t.model = wp
		return nil
	case "Unigram":
		var entries [][2]json.RawMessage
		if err := json.Unmarshal(m.Vocab, &entries); err != nil {
			return fmt.Errorf("%w: Unigram vocab must be a list of [token, score]: %w", ErrFormat, err)
		}
		u := &unigram{vocab: make(map[string]int, len(entries)), scores: make([]float64, len(entries)), unk: -1, byteFallback: m.ByteFallback}
		t.tokens = make([]string, len(entries))
		u.minScore = math.Inf(1)
		for i, e := range entries {
			var tok string
			var score float64
			if err := json.Unmarshal(e[0], &tok); err != nil {
				return fmt.Errorf("%w: Unigram vocab entry %d: token is not a string", ErrFormat, i)
			}
			if err := json.Unmarshal(e[1], &score); err != nil || math.IsNaN(score) || math.IsInf(score, 0) {
				return fmt.Errorf("%w: Unigram vocab entry %d: score is not a number", ErrFormat, i)
			}
			if _, dup := u.vocab[tok]; !dup {
				u.vocab[tok] = i
			}
			t.tokens[i] = tok
			u.scores[i] = score
			u.minScore = min(u.minScore, score)
			u.maxLen = max(u.maxLen, utf8.RuneCountInString(tok))
		}
		if len(entries) == 0 {
			return fmt.Errorf("%w: Unigram vocab is empty", ErrFormat)
		}
		if m.UnkID != nil {
			if *m.UnkID < 0 || *m.UnkID >= len(entries) {
				return fmt.Errorf("%w: Unigram unk_id %d outside the vocab", ErrFormat, *m.UnkID)
			}
			u.unk = *m.UnkID
			t.unkID = u.unk
		}
		if u.byteFallback {
			for b := range 256 {
				id, ok := u.vocab[fmt.Sprintf("<0x%02X>", b)]
				if !ok {
					u.byteFallback = false
					break
				}
				u.bytes[b] = id
			}
		}
		t.model = u
		return nil
	default:
		return fmt.Errorf("%w: model type %q (supported: WordPiece, Unigram, WordLevel)", ErrFormat, m.Type)
	}
}

// setTokens builds the id → token table; ids must be 0..n-1 without gaps.
func (t *Tokenizer) setTokens(vocab map[string]int) error {
	if len(vocab) == 0 {
		return fmt.Errorf("%w: vocab is empty", ErrFormat)
	}
	t.tokens = make([]string, len(vocab))
	seen := make([]bool, len(vocab))
	for tok, id := range vocab {
		if id < 0 || id >= len(vocab) || seen[id] {
			return fmt.Errorf("%w: vocab ids must be 0..%d, each once (token %q has %d)", ErrFormat, len(vocab)-1, tok, id)
		}
		seen[id] = true
		t.tokens[id] = tok
	}
	return nil
}

type wordLevel struct {
	vocab map[string]int
	unk   int
}

func (m *wordLevel) encode(w string, out []int) []int {
	if id, ok := m.vocab[w]; ok {
		return append(out, id)
	}
	if m.unk >= 0 {
		return append(out, m.unk)
	}
	return out
}

type wordPiece struct {
	vocab    map[string]int
	unk      int
	prefix   string
	maxChars int
}

// encode is greedy longest-match-first; a word with a part no piece matches
// becomes one unknown token, as in BERT.
func (m *wordPiece) encode(w string, out []int) []int {
	if utf8.RuneCountInString(w) > m.maxChars {
		return m.unknown(out)
	}
	start := len(out)
	buf := make([]byte, 0, len(m.prefix)+len(w))
	for pos := 0; pos < len(w); {
		found := -1
		end := len(w)
		for end > pos {
			piece := w[pos:end]
			if pos > 0 {
				buf = append(buf[:0], m.prefix...)
				buf = append(buf, piece...)
				piece = string(buf)
			}
			if id, ok := m.vocab[piece]; ok {
				found = id
				break
			}
			_, size := utf8.DecodeLastRuneInString(w[pos:end])
			end -= size
		}
		if found < 0 {
			return m.unknown(out[:start])
		}
		out = append(out, found)
		pos = end
	}
	return out
}

func (m *wordPiece) unknown(out []int) []int {
	if m.unk >= 0 {
		return append(out, m.unk)
	}
	return out
}

type unigram struct {
	vocab        map[string]int
	scores       []float64
	minScore     float64
	maxLen       int
	unk          int
	byteFallback bool
	bytes        [256]int
}

// unkPenalty is how much worse than the worst piece an unknown character
// scores, as in SentencePiece.
const unkPenalty = 10.0

// encode finds the most likely segmentation (Viterbi over piece scores).
// Characters no piece covers become the unknown token (consecutive ones fused)
// or, with byte fallback, their UTF-8 bytes.
func (m *unigram) encode(w string, out []int) []int {
	n := len(w)
	best := make([]float64, n+1)
	from := make([]int, n+1) // start offset of the last piece ending here
	piece := make([]int, n+1)
	for i := 1; i <= n; i++ {
		best[i] = math.Inf(-1)
	}
	unkScore := m.minScore - unkPenalty
	for i := 0; i < n; {
		_, size := utf8.DecodeRuneInString(w[i:])
		if !math.IsInf(best[i], -1) {
			singleFound := false
			j := i
			for k := 0; k < m.maxLen && j < n; k++ {
				_, sz := utf8.DecodeRuneInString(w[j:])
				j += sz
				if id, ok := m.vocab[w[i:j]]; ok {
					if k == 0 {
						singleFound = true
					}
					if s := best[i] + m.scores[id]; s > best[j] {
						best[j], from[j], piece[j] = s, i, id
					}
				}
			}
			if !singleFound {
				if s := best[i] + unkScore; s > best[i+size] {
					best[i+size], from[i+size], piece[i+size] = s, i, -1
				}
			}
		}
		i += size
	}
	// Walk back from the end, then emit in order.
	var rev []int
	var starts []int
	for j := n; j > 0; j = from[j] {
		rev = append(rev, piece[j])
		starts = append(starts, from[j])
	}
	prevUnk := false
	for k := len(rev) - 1; k >= 0; k-- {
		id := rev[k]
		if id >= 0 {
			out = append(out, id)
			prevUnk = false
			continue
		}
		if m.byteFallback {
			end := n
			if k > 0 {
				end = starts[k-1]
			}
			for _, b := range []byte(w[starts[k]:end]) {
				out = append(out, m.bytes[b])
			}
			continue
		}
		if m.unk >= 0 && !prevUnk {
			out = append(out, m.unk)
		}
		prevUnk = true
	}
	return out
}
