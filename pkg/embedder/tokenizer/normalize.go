package tokenizer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

type componentJSON struct {
	Type string `json:"type"`
	// BertNormalizer
	CleanText          *bool `json:"clean_text"`
	HandleChineseChars *bool `json:"handle_chinese_chars"`
	StripAccents       *bool `json:"strip_accents"`
	Lowercase          *bool `json:"lowercase"`
	// Strip
	StripLeft  *bool `json:"strip_left"`
	StripRight *bool `json:"strip_right"`
	Left       *bool `json:"left"`
	Right      *bool `json:"right"`
	// Replace, Split
	Pattern *struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	} `json:"pattern"`
	Content string `json:"content"`
	// Prepend
	Prepend string `json:"prepend"`
	// Sequence
	Normalizers   []json.RawMessage `json:"normalizers"`
	PreTokenizers []json.RawMessage `json:"pretokenizers"`
	// Metaspace
	Replacement    *string `json:"replacement"`
	PrependScheme  *string `json:"prepend_scheme"`
	AddPrefixSpace *bool   `json:"add_prefix_space"`
	Split          *bool   `json:"split"`
	// Digits
	IndividualDigits bool `json:"individual_digits"`
	// Punctuation
	Behavior string `json:"behavior"`
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func identity(s string) string { return s }

func parseNormalizer(raw json.RawMessage, depth int) (func(string) string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return identity, nil
	}
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: normalizers nested too deep", ErrFormat)
	}
	var c componentJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: normalizer: %w", ErrFormat, err)
	}
	switch c.Type {
	case "BertNormalizer":
		lower := boolOr(c.Lowercase, true)
		return bertNormalizer(boolOr(c.CleanText, true), boolOr(c.HandleChineseChars, true), boolOr(c.StripAccents, lower), lower), nil
	case "Lowercase":
		return strings.ToLower, nil
	case "NFC":
		return norm.NFC.String, nil
	case "NFD":
		return norm.NFD.String, nil
	case "NFKC", "Precompiled":
		return norm.NFKC.String, nil
	case "NFKD":
		return norm.NFKD.String, nil
	case "StripAccents":
		return removeMarks, nil
	case "Strip":
		left := boolOr(c.StripLeft, boolOr(c.Left, true))
		right := boolOr(c.StripRight, boolOr(c.Right, true))
		return func(s string) string {
			if left {
				s = strings.TrimLeftFunc(s, unicode.IsSpace)
			}
			if right {
				s = strings.TrimRightFunc(s, unicode.IsSpace)
			}
			return s
		}, nil
	case "Replace":
		if c.Pattern == nil {
			return nil, fmt.Errorf("%w: Replace normalizer without pattern", ErrFormat)
		}
		content := c.Content
		if c.Pattern.String != nil {
			old := *c.Pattern.String
			if old == "" {
				return identity, nil
			}
			return func(s string) string { return strings.ReplaceAll(s, old, content) }, nil
		}
		if c.Pattern.Regex != nil {
			re, err := regexp.Compile(*c.Pattern.Regex)
			if err != nil {
				return nil, fmt.Errorf("%w: Replace normalizer regex %q: %w", ErrFormat, *c.Pattern.Regex, err)
			}
			return func(s string) string { return re.ReplaceAllLiteralString(s, content) }, nil
		}
		return nil, fmt.Errorf("%w: Replace normalizer pattern is neither String nor Regex", ErrFormat)
	case "Prepend":
		p := c.Prepend
		return func(s string) string {
			if s == "" {
				return s
			}
			return p + s
		}, nil
	case "Sequence":
		fns := make([]func(string) string, 0, len(c.Normalizers))
		for _, n := range c.Normalizers {
			fn, err := parseNormalizer(n, depth+1)
			if err != nil {
				return nil, err
			}
			fns = append(fns, fn)
		}
		return func(s string) string {
			for _, fn := range fns {
				s = fn(s)
			}
			return s
		}, nil
	default:
		return nil, fmt.Errorf("%w: normalizer %q", ErrFormat, c.Type)
	}
}

// bertNormalizer cleans control characters, spaces out CJK ideographs, strips
// accents and lowercases, as BERT's basic tokenizer does.
func bertNormalizer(clean, chinese, stripAccents, lower bool) func(string) string {
	return func(s string) string {
		var b strings.Builder
		b.Grow(len(s))
		for _, r := range s {
			switch {
			case clean && (r == 0 || r == unicode.ReplacementChar || isControl(r)):
				continue
			case clean && isBertSpace(r):
				b.WriteByte(' ')
			case chinese && isCJK(r):
				b.WriteByte(' ')
				b.WriteRune(r)
				b.WriteByte(' ')
			default:
				b.WriteRune(r)
			}
		}
		s = b.String()
		if stripAccents {
			s = removeMarks(norm.NFD.String(s))
		}
		if lower {
			s = strings.ToLower(s)
		}
		return s
	}
}

func removeMarks(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Mn, r) {
			return -1
		}
		return r
	}, s)
}

func isBertSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.Zs, r)
}

func isControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs)
}

func isCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) || (r >= 0x3400 && r <= 0x4DBF) ||
		(r >= 0x20000 && r <= 0x2A6DF) || (r >= 0x2A700 && r <= 0x2B73F) ||
		(r >= 0x2B740 && r <= 0x2B81F) || (r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) || (r >= 0x2F800 && r <= 0x2FA1F)
}

// isBertPunct is ASCII symbols plus Unicode punctuation, as BERT treats them.
func isBertPunct(r rune) bool {
	if (r >= 33 && r <= 47) || (r >= 58 && r <= 64) || (r >= 91 && r <= 96) || (r >= 123 && r <= 126) {
		return true
	}
	return unicode.IsPunct(r)
}
