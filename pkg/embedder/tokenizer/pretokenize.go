package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
)

func wholeText(s string) []string { return []string{s} }

func parsePreTokenizer(raw json.RawMessage, depth int) (func(string) []string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return wholeText, nil
	}
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: pre-tokenizers nested too deep", ErrFormat)
	}
	var c componentJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: pre_tokenizer: %w", ErrFormat, err)
	}
	switch c.Type {
	case "BertPreTokenizer":
		return func(s string) []string { return splitIsolating(s, unicode.IsSpace, isBertPunct) }, nil
	case "WhitespaceSplit":
		return strings.Fields, nil
	case "Whitespace":
		return whitespace, nil
	case "Punctuation":
		if c.Behavior != "" && c.Behavior != "Isolated" && c.Behavior != "isolated" {
			return nil, fmt.Errorf("%w: Punctuation pre-tokenizer behavior %q (supported: Isolated)", ErrFormat, c.Behavior)
		}
		return func(s string) []string { return splitIsolating(s, func(rune) bool { return false }, isBertPunct) }, nil
	case "Digits":
		individual := c.IndividualDigits
		return func(s string) []string { return digits(s, individual) }, nil
	case "Metaspace":
		return metaspace(c)
	case "Sequence":
		fns := make([]func(string) []string, 0, len(c.PreTokenizers))
		for _, p := range c.PreTokenizers {
			fn, err := parsePreTokenizer(p, depth+1)
			if err != nil {
				return nil, err
			}
			fns = append(fns, fn)
		}
		return func(s string) []string {
			parts := []string{s}
			for _, fn := range fns {
				var next []string
				for _, p := range parts {
					next = append(next, fn(p)...)
				}
				parts = next
			}
			return parts
		}, nil
	default:
		return nil, fmt.Errorf("%w: pre-tokenizer %q", ErrFormat, c.Type)
	}
}

// splitIsolating splits on drop runes (removed) and makes every isolate rune a
// piece of its own.
func splitIsolating(s string, drop, isolate func(rune) bool) []string {
	var out []string
	start := -1
	for i, r := range s {
		switch {
		case drop(r):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		case isolate(r):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			out = append(out, string(r))
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// isWord is the Unicode \w class: letters, marks, decimal digits and connector
// punctuation.
func isWord(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r) || unicode.Is(unicode.Pc, r)
}

// whitespace is the \w+|[^\w\s]+ split of the Whitespace pre-tokenizer.
func whitespace(s string) []string {
	var out []string
	start, class := -1, 0 // class 1: word, 2: other non-space
	for i, r := range s {
		c := 2
		switch {
		case unicode.IsSpace(r):
			c = 0
		case isWord(r):
			c = 1
		}
		if c != class {
			if start >= 0 {
				out = append(out, s[start:i])
			}
			start, class = -1, c
			if c != 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

func digits(s string, individual bool) []string {
	var out []string
	start := 0
	prevDigit := false
	for i, r := range s {
		d := unicode.IsDigit(r)
		if i > start && (d != prevDigit || (d && individual)) {
			out = append(out, s[start:i])
			start = i
		}
		prevDigit = d
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// metaspace replaces spaces with the replacement character (▁), prepends one
// per the scheme, and with split cuts before every replacement.
func metaspace(c componentJSON) (func(string) []string, error) {
	repl := "▁"
	if c.Replacement != nil {
		repl = *c.Replacement
	}
	scheme := "always"
	if c.PrependScheme != nil {
		scheme = *c.PrependScheme
	} else if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
		scheme = "never"
	}
	if scheme != "always" && scheme != "first" && scheme != "never" {
		return nil, fmt.Errorf("%w: Metaspace prepend_scheme %q", ErrFormat, scheme)
	}
	split := boolOr(c.Split, true)
	return func(s string) []string {
		s = strings.ReplaceAll(s, " ", repl)
		// Within one call there is no earlier section, so "first" acts as
		// "always".
		if scheme != "never" && !strings.HasPrefix(s, repl) {
			s = repl + s
		}
		if !split || repl == "" || len(s) <= len(repl) {
			return []string{s}
		}
		var out []string
		for {
			i := strings.Index(s[len(repl):], repl)
			if i < 0 {
				break
			}
			out = append(out, s[:len(repl)+i])
			s = s[len(repl)+i:]
		}
		return append(out, s)
	}, nil
}
