package embedding

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/manushya-ai/manushya/pkg/embedder"
	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
	"github.com/manushya-ai/manushya/pkg/embedder/model2vec"
	"github.com/manushya-ai/manushya/pkg/embedder/openai"
)

// Provider types accepted in ProviderConfig.Type.
const (
	TypeOpenAI  = "openai_compatible"
	TypeLocal   = "local"
	TypeHashing = "hashing"
)

// Config is the embedding service's own configuration. The zero value serves
// the hashing embedder at 384 dimensions, what `manushya dev` uses.
type Config struct {
	// Providers are the configured providers. Empty: one hashing provider.
	Providers []ProviderConfig `json:"providers"`
	// Fallback names providers in the order requests without a model try them;
	// the first serves the default model. Empty: the order of Providers.
	// Providers left out of the list serve only requests that name their model.
	Fallback []string `json:"fallback"`
	// CacheTTL is how long cached vectors live (default 24h; negative: no
	// cache).
	CacheTTL time.Duration `json:"cache_ttl"`
	// MaxTexts is the most texts one request may carry (default and ceiling
	// 2048, the API's limit).
	MaxTexts int `json:"max_texts"`
	// MaxTextChars is the longest text accepted, in characters (default and
	// ceiling 100000, the API's limit).
	MaxTextChars int `json:"max_text_chars"`
	// UsageFlushInterval is how often summed token usage is written as
	// embedding.completed events (default 5s).
	UsageFlushInterval time.Duration `json:"usage_flush_interval"`
}

// ProviderConfig is one provider.
type ProviderConfig struct {
	// Name identifies the provider in answers, metrics and Fallback.
	Name string `json:"name"`
	// Type is openai_compatible, local or hashing.
	Type string `json:"type"`
	// BaseURL is the API root of an openai_compatible provider (".../v1").
	BaseURL string `json:"base_url"`
	// APIKey authenticates to an openai_compatible provider; prefer APIKeyEnv.
	APIKey string `json:"api_key"`
	// APIKeyEnv names an environment variable holding the API key.
	APIKeyEnv string `json:"api_key_env"`
	// APIKeyHeader sends the key in this header instead of
	// "Authorization: Bearer" (Azure: "api-key").
	APIKeyHeader string `json:"api_key_header"`
	// Model is the model name: sent to an API, reported for a local model
	// (default: its directory name); ignored for hashing.
	Model string `json:"model"`
	// Dimensions is the vector length: the API model's (0: learnt from its
	// first answer), or the hashing embedder's (default 384).
	Dimensions int `json:"dimensions"`
	// SendDimensions passes "dimensions" to the API, for models that can
	// shorten their vectors.
	SendDimensions bool `json:"send_dimensions"`
	// MaxInputTokens is the model's input limit (API: texts are cut to about
	// four characters per token of it; local: tokens read, default 512).
	MaxInputTokens int `json:"max_input_tokens"`
	// Path is the directory of a local Model2Vec model.
	Path string `json:"path"`
	// Timeout bounds one API attempt (default 30s).
	Timeout Duration `json:"timeout"`
	// MaxBatchSize, MaxConcurrency and MaxRetries tune API calls (defaults
	// 128, 2, 3).
	MaxBatchSize   int `json:"max_batch_size"`
	MaxConcurrency int `json:"max_concurrency"`
	MaxRetries     int `json:"max_retries"`
	// Cache keeps this provider's vectors in the cache (default: on for APIs,
	// off for local and hashing, which compute faster than a cache answers).
	Cache *bool `json:"cache"`
	// BreakerFailures consecutive failures open the circuit (default 5);
	// BreakerCoolDown later trial calls are let through (default 30s).
	BreakerFailures int      `json:"breaker_failures"`
	BreakerCoolDown Duration `json:"breaker_cool_down"`
}

// Duration is a time.Duration read from JSON as "30s" or a number of seconds.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if s, err := strconv.Unquote(string(b)); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	secs, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("duration %s: want \"30s\" or seconds", b)
	}
	*d = Duration(time.Duration(secs * float64(time.Second)))
	return nil
}

// ParseProviders reads a JSON list of providers (the embedding.providers
// setting); unknown keys are errors.
func ParseProviders(text string) ([]ProviderConfig, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.DisallowUnknownFields()
	var out []ProviderConfig
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("embedding.providers: %w", err)
	}
	return out, nil
}

// String describes the configuration without secrets.
func (p ProviderConfig) String() string {
	if p.APIKey != "" {
		p.APIKey = "****"
	}
	b, _ := json.Marshal(p)
	return string(b)
}

func (c *Config) withDefaults() {
	if c.MaxTexts <= 0 || c.MaxTexts > 2048 {
		c.MaxTexts = 2048
	}
	if c.MaxTextChars <= 0 || c.MaxTextChars > 100000 {
		c.MaxTextChars = 100000
	}
	if c.UsageFlushInterval <= 0 {
		c.UsageFlushInterval = 5 * time.Second
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 24 * time.Hour
	}
	if len(c.Providers) == 0 {
		c.Providers = []ProviderConfig{{Name: TypeHashing, Type: TypeHashing, Dimensions: hashing.DefaultDimensions}}
	}
}

// buildProviders turns the configuration into provider specs in fallback order.
func buildProviders(c Config) ([]embedder.ProviderSpec, error) {
	byName := map[string]embedder.ProviderSpec{}
	var declared []string
	var errs []error
	for i, p := range c.Providers {
		spec, err := buildProvider(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("embedding.providers[%d]: %w", i, err))
			continue
		}
		if _, dup := byName[spec.Name]; dup {
			errs = append(errs, fmt.Errorf("embedding.providers[%d]: name %q used twice", i, spec.Name))
			continue
		}
		byName[spec.Name] = spec
		declared = append(declared, spec.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	order := c.Fallback
	if len(order) == 0 {
		order = declared
	}
	var specs []embedder.ProviderSpec
	used := map[string]bool{}
	for i, name := range order {
		spec, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("embedding.fallback[%d]: no provider named %q", i, name)
		}
		if used[name] {
			return nil, fmt.Errorf("embedding.fallback[%d]: %q listed twice", i, name)
		}
		used[name] = true
		specs = append(specs, spec)
	}
	// Providers outside the fallback order still serve their model by name.
	for _, name := range declared {
		if !used[name] {
			specs = append(specs, noFallback(byName[name]))
		}
	}
	return specs, nil
}

// noFallback marks a spec as reachable by model name only.
func noFallback(s embedder.ProviderSpec) embedder.ProviderSpec {
	s.NamedOnly = true
	return s
}

func buildProvider(p ProviderConfig) (embedder.ProviderSpec, error) {
	if p.Type == "" {
		return embedder.ProviderSpec{}, errors.New("type is required (openai_compatible, local or hashing)")
	}
	if p.Name == "" {
		p.Name = p.Type
	}
	spec := embedder.ProviderSpec{
		Name:    p.Name,
		Breaker: embedder.Breaker{Failures: uint32(max(p.BreakerFailures, 0)), CoolDown: time.Duration(p.BreakerCoolDown)},
	}
	switch p.Type {
	case TypeOpenAI, "openai":
		key := p.APIKey
		if p.APIKeyEnv != "" {
			key = os.Getenv(p.APIKeyEnv)
			if key == "" {
				return spec, fmt.Errorf("provider %q: environment variable %s (api_key_env) is empty", p.Name, p.APIKeyEnv)
			}
		}
		c, err := openai.New(openai.Config{
			BaseURL: p.BaseURL, APIKey: key, APIKeyHeader: p.APIKeyHeader, Model: p.Model,
			Dimensions: p.Dimensions, SendDimensions: p.SendDimensions, MaxInputTokens: p.MaxInputTokens,
			MaxBatchSize: p.MaxBatchSize, MaxConcurrency: p.MaxConcurrency, Timeout: time.Duration(p.Timeout),
			MaxRetries: p.MaxRetries,
		})
		if err != nil {
			return spec, fmt.Errorf("provider %q: %w", p.Name, err)
		}
		spec.Kind, spec.Provider, spec.Cache = embedder.KindOpenAI, c, true
	case TypeLocal, "model2vec":
		if p.Path == "" {
			return spec, fmt.Errorf("provider %q: path (the model directory) is required", p.Name)
		}
		m, err := model2vec.Load(p.Path, model2vec.Options{Name: p.Model, MaxTokens: p.MaxInputTokens})
		if err != nil {
			return spec, fmt.Errorf("provider %q: %w", p.Name, err)
		}
		if p.Dimensions != 0 && p.Dimensions != m.Model().Dimensions {
			return spec, fmt.Errorf("provider %q: dimensions %d, but the model makes %d-dimensional vectors", p.Name, p.Dimensions, m.Model().Dimensions)
		}
		spec.Kind, spec.Provider = embedder.KindLocal, m
	case TypeHashing:
		if p.Dimensions < 0 || p.Dimensions > 16384 {
			return spec, fmt.Errorf("provider %q: dimensions must be 1..16384", p.Name)
		}
		spec.Kind, spec.Provider = embedder.KindHashing, embedder.Hashing(p.Dimensions)
	default:
		return spec, fmt.Errorf("provider %q: unknown type %q (openai_compatible, local or hashing)", p.Name, p.Type)
	}
	if p.Cache != nil {
		spec.Cache = *p.Cache
	}
	return spec, nil
}
