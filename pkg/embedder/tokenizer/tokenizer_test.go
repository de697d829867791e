package tokenizer_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/embedder/embeddertest"
	"github.com/manushya-ai/manushya/pkg/embedder/tokenizer"
)

func wordPiece(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join(embeddertest.WriteModel(t), "tokenizer.json"))
	require.NoError(t, err)
	return tok
}

// unigramJSON is a Model2Vec-style Unigram tokenizer: multiword pieces, a
// normalizer spacing out punctuation, and Metaspace without splitting.
func unigramJSON(split, byteFallback bool) []byte {
	vocab := [][2]any{
		{"<unk>", 0.0}, {"▁hello", -1.0}, {"▁hel", -2.0}, {"lo", -2.0}, {"▁", -3.0},
		{"w", -4.0}, {"o", -4.0}, {"r", -4.0}, {"l", -4.0}, {"d", -4.0},
		{"▁world", -1.5}, {"▁hello▁world", -1.8}, {"▁,", -2.0},
	}
	if byteFallback {
		for b := range 256 {
			vocab = append(vocab, [2]any{fmt.Sprintf("<0x%02X>", b), -20.0})
		}
	}
	doc := map[string]any{
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "NFKC"},
			map[string]any{"type": "Lowercase"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": ","}, "content": " , "},
			map[string]any{"type": "Replace", "pattern": map[string]any{"Regex": `\s+`}, "content": " "},
			map[string]any{"type": "Strip", "strip_left": false, "strip_right": true},
		}},
		"pre_tokenizer": map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": split},
		"model":         map[string]any{"type": "Unigram", "unk_id": 0, "vocab": vocab, "byte_fallback": byteFallback},
	}
	b, _ := json.Marshal(doc)
	return b
}

func TestWordPiece(t *testing.T) {
	t.Parallel()
	tok := wordPiece(t)
	require.Equal(t, 10, tok.VocabSize())
	unk, ok := tok.UnkID()
	require.True(t, ok)
	require.Equal(t, 1, unk)
	cases := map[string][]int{
		"hello world":       {2, 3},
		"HELLO\tWorlds":     {2, 3, 4},
		"cats, dogs.":       {5, 4, 1, 6, 4, 7},
		"unable":            {8, 9},
		"catz":              {1}, // a word with an unmatched part is one unknown token
		"héllo\u0000 wörld": {2, 3},
		"hello世界":           {2, 1, 1}, // ideographs become words of their own
		"":                  {},
		"   \n  ":           {},
	}
	for text, want := range cases {
		require.Equal(t, want, tok.Encode(text), "%q", text)
	}
}

func TestUnigram(t *testing.T) {
	t.Parallel()
	tok, err := tokenizer.Parse(unigramJSON(false, false))
	require.NoError(t, err)
	// The multiword piece beats two single words (-1.8 > -2.5).
	require.Equal(t, []int{11}, tok.Encode("Hello   World"))
	// Unknown characters fuse into one unknown token.
	require.Equal(t, []int{1, 4, 0}, tok.Encode("hello xyz"))
	require.Equal(t, []int{1, 12}, tok.Encode("hello,"))

	split, err := tokenizer.Parse(unigramJSON(true, false))
	require.NoError(t, err)
	require.Equal(t, []int{1, 10}, split.Encode("hello world"))

	bytes, err := tokenizer.Parse(unigramJSON(false, true))
	require.NoError(t, err)
	x := 13 + int('x')
	require.Equal(t, []int{1, 4, x, x}, bytes.Encode("hello xx"))
	// é is two UTF-8 bytes.
	require.Equal(t, []int{4, 13 + 0xC3, 13 + 0xA9}, bytes.Encode("é"))
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	bad := []string{
		`not json`,
		`{}`,
		`{"model":{"type":"BPE","vocab":{},"merges":[]}}`,
		`{"model":{"type":"WordPiece","vocab":{"a":0,"b":0}}}`,
		`{"model":{"type":"WordPiece","vocab":{"a":5}}}`,
		`{"model":{"type":"Unigram","vocab":[]}}`,
		`{"model":{"type":"Unigram","vocab":[["a","x"]]}}`,
		`{"model":{"type":"Unigram","vocab":[["a",0]],"unk_id":3}}`,
		`{"normalizer":{"type":"Nope"},"model":{"type":"WordPiece","vocab":{"a":0}}}`,
		`{"normalizer":{"type":"Replace","pattern":{"Regex":"("},"content":""},"model":{"type":"WordPiece","vocab":{"a":0}}}`,
		`{"pre_tokenizer":{"type":"ByteLevel"},"model":{"type":"WordPiece","vocab":{"a":0}}}`,
	}
	for _, b := range bad {
		_, err := tokenizer.Parse([]byte(b))
		require.ErrorIs(t, err, tokenizer.ErrFormat, b)
	}
}

func fuzzTexts() []string {
	return []string{"hello world", "Hello, cats!", "héllo\u0000 wörld 世界", "\xff\xfe", "▁▁", "   ", "", "unable##s"}
}

// FuzzParse feeds arbitrary tokenizer.json documents: Parse fails cleanly or
// returns a tokenizer whose ids stay inside its vocabulary.
func FuzzParse(f *testing.F) {
	wp, err := os.ReadFile(filepath.Join(embeddertest.WriteModel(f), "tokenizer.json"))
	require.NoError(f, err)
	f.Add(wp)
	f.Add(unigramJSON(false, false))
	f.Add(unigramJSON(true, true))
	f.Add([]byte(`{"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"}]},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Whitespace"},{"type":"Digits","individual_digits":true},{"type":"Punctuation"}]},"model":{"type":"WordLevel","vocab":{"[UNK]":0,"a":1},"unk_token":"[UNK]"}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		tok, err := tokenizer.Parse(doc)
		if err != nil {
			return
		}
		for _, text := range fuzzTexts() {
			for _, id := range tok.Encode(text) {
				require.GreaterOrEqual(t, id, 0)
				require.Less(t, id, tok.VocabSize())
			}
		}
	})
}

// FuzzEncode feeds arbitrary text to both model kinds.
func FuzzEncode(f *testing.F) {
	for _, s := range fuzzTexts() {
		f.Add(s)
	}
	wp := wordPiece(f)
	uni, err := tokenizer.Parse(unigramJSON(false, true))
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, text string) {
		for _, tok := range []*tokenizer.Tokenizer{wp, uni} {
			for _, id := range tok.Encode(text) {
				require.GreaterOrEqual(t, id, 0)
				require.Less(t, id, tok.VocabSize())
			}
		}
	})
}

func TestWordLevelWithWhitespaceAndDigits(t *testing.T) {
	t.Parallel()
	doc := `{"normalizer":{"type":"Lowercase"},
	 "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Whitespace"},{"type":"Digits","individual_digits":true}]},
	 "model":{"type":"WordLevel","unk_token":"[UNK]","vocab":{"[UNK]":0,"room":1,"4":2,"2":3,"?!":4,"naïve":5}}}`
	tok, err := tokenizer.Parse([]byte(doc))
	require.NoError(t, err)
	// "room42?!" → room | 4 | 2 | ?! ; "Naïve" keeps its combining-free ï.
	require.Equal(t, []int{1, 2, 3, 4, 5, 0}, tok.Encode("Room42?! Naïve cafe"))
}
