// Package openai is an embedding provider for any HTTP endpoint speaking the
// OpenAI embeddings API (POST <base>/embeddings): OpenAI, Azure OpenAI, Ollama,
// vLLM, TEI, LM Studio and the like.
//
// Texts are sent in batches of at most MaxBatchSize, a few batches at a time.
// Each attempt has its own timeout; 408, 409, 429, 5xx answers and transport
// failures are retried with exponential backoff and full jitter, waiting as long
// as Retry-After (or retry-after-ms) asks when the server says. The API key is
// sent only in a header and never appears in an error.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/manushya-ai/manushya/pkg/embedder"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

// Config configures a client.
type Config struct {
	// BaseURL is the API root, e.g. http://127.0.0.1:11434/v1; "/embeddings" is
	// appended.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>", or in APIKeyHeader when
	// set; empty sends none (local servers).
	APIKey string
	// APIKeyHeader names another header for the key, e.g. "api-key" for Azure.
	APIKeyHeader string
	// Model is the model name sent to the server and reported to callers.
	Model string
	// Dimensions is the length of the model's vectors; answers of another length
	// are errors. 0 learns it from the first answer.
	Dimensions int
	// SendDimensions sends the "dimensions" parameter, for models that can
	// shorten their vectors (text-embedding-3-*); callers may then ask for any
	// length up to Dimensions.
	SendDimensions bool
	// MaxInputTokens is the model's input limit; texts are cut to about four
	// characters per token of it before sending. 0: not cut.
	MaxInputTokens int
	// MaxBatchSize is the most texts per request (default 128).
	MaxBatchSize int
	// MaxConcurrency is the most requests in flight for one Embed (default 2).
	MaxConcurrency int
	// Timeout bounds one HTTP attempt (default 30s).
	Timeout time.Duration
	// MaxRetries is how many times a failed attempt is retried (default 3; a
	// negative value disables retries).
	MaxRetries int
	// InitialBackoff and MaxBackoff bound the jittered exponential backoff
	// (defaults 200ms and 10s).
	InitialBackoff, MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits for (default
	// 30s); a server asking for longer gets no retry, so the caller can fail
	// over instead of hanging.
	MaxRetryAfter time.Duration
	// HTTPClient sends the requests (default: a client with sane transport
	// limits).
	HTTPClient *http.Client
	// Sleep waits between attempts; nil waits on a timer. Tests replace it to see
	// the waits without spending them.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Client is an OpenAI-compatible embeddings client; it implements
// embedder.Provider.
type Client struct {
	cfg      Config
	endpoint string
	// learnt is the vector length of the first answer when Dimensions is 0.
	learnt atomic.Int64
	// redactor removes the key and URL credentials from error text.
	redactor *strings.Replacer
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.Model == "" {
		return nil, errors.New("openai: model is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("openai: base_url %q must be an absolute http or https URL", telemetry.RedactURL(cfg.BaseURL))
	}
	if cfg.Dimensions < 0 || cfg.MaxInputTokens < 0 || cfg.MaxBatchSize < 0 || cfg.MaxConcurrency < 0 || cfg.Timeout < 0 {
		return nil, errors.New("openai: dimensions, max_input_tokens, max_batch_size, max_concurrency and timeout must not be negative")
	}
	if cfg.SendDimensions && cfg.Dimensions == 0 {
		return nil, errors.New("openai: send_dimensions needs dimensions")
	}
	if cfg.MaxBatchSize == 0 {
		cfg.MaxBatchSize = 128
	}
	if cfg.MaxConcurrency == 0 {
		cfg.MaxConcurrency = 2
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 3
	}
	if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 30 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
		}}
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	pairs := []string{}
	if cfg.APIKey != "" {
		pairs = append(pairs, cfg.APIKey, telemetry.Redacted)
	}
	if red := telemetry.RedactURL(cfg.BaseURL); red != cfg.BaseURL {
		pairs = append(pairs, cfg.BaseURL, red)
	}
	if u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			pairs = append(pairs, p, telemetry.Redacted)
		}
	}
	return &Client{
		cfg:      cfg,
		endpoint: strings.TrimSuffix(cfg.BaseURL, "/") + "/embeddings",
		redactor: strings.NewReplacer(pairs...),
	}, nil
}

// Model implements embedder.Provider.
func (c *Client) Model() embedder.Model {
	dims := c.cfg.Dimensions
	if dims == 0 {
		dims = int(c.learnt.Load())
	}
	return embedder.Model{
		Name: c.cfg.Model, Dimensions: dims,
		DimensionsConfigurable: c.cfg.SendDimensions, MaxInputTokens: c.cfg.MaxInputTokens,
	}
}

// APIError is an answer of the server that is not a success.
type APIError struct {
	StatusCode int
	// Message is the server's error message, with secrets removed and cut short.
	Message string
	// RetryAfter is what the server asked to wait, if it did.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("openai: HTTP %d", e.StatusCode)
	}
	return fmt.Sprintf("openai: HTTP %d: %s", e.StatusCode, e.Message)
}

// Unwrap makes refusals of the input match embedder.ErrRejected.
func (e *APIError) Unwrap() error {
	if rejected(e.StatusCode) {
		return embedder.ErrRejected
	}
	return nil
}

func rejected(code int) bool {
	return code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge || code == http.StatusUnprocessableEntity
}

func retryable(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusConflict || code == http.StatusTooManyRequests || code >= 500
}

// Embed implements embedder.Provider.
func (c *Client) Embed(ctx context.Context, texts []string, dims int) (embedder.Result, error) {
	if dims != 0 && dims != c.cfg.Dimensions && (!c.cfg.SendDimensions || dims > c.cfg.Dimensions) {
		return embedder.Result{}, fmt.Errorf("%w: %s makes %d-dimensional vectors", embedder.ErrDimensions, c.cfg.Model, c.cfg.Dimensions)
	}
	if dims == 0 {
		dims = c.cfg.Dimensions
	}
	out := embedder.Result{Vectors: make([][]float32, len(texts))}
	tokens := make([]int, (len(texts)+c.cfg.MaxBatchSize-1)/c.cfg.MaxBatchSize)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.MaxConcurrency)
	for b := range tokens {
		lo := b * c.cfg.MaxBatchSize
		hi := min(lo+c.cfg.MaxBatchSize, len(texts))
		g.Go(func() error {
			n, err := c.embedBatch(gctx, texts[lo:hi], dims, out.Vectors[lo:hi])
			tokens[b] = n
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return embedder.Result{}, err
	}
	for _, n := range tokens {
		out.PromptTokens += n
	}
	return out, nil
}

type embedRequest struct {
	Model      string   `json:"model"`
	Input      []string `json:"input"`
	Dimensions int      `json:"dimensions,omitempty"`
}

type embedResponse struct {
	Data []struct {
		Embedding []float32 `json:"embedding"`
		Index     int       `json:"index"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

type errorBody struct {
	Error json.RawMessage `json:"error"`
}

// embedBatch sends one batch, retrying, and fills out.
func (c *Client) embedBatch(ctx context.Context, texts []string, dims int, out [][]float32) (int, error) {
	req := embedRequest{Model: c.cfg.Model, Input: texts}
	if c.cfg.MaxInputTokens > 0 {
		req.Input = make([]string, len(texts))
		for i, t := range texts {
			req.Input[i] = truncateRunes(t, c.cfg.MaxInputTokens*4)
		}
	}
	if c.cfg.SendDimensions {
		req.Dimensions = dims
	}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, fmt.Errorf("openai: encode request: %w", err)
	}
	for attempt := 0; ; attempt++ {
		tokens, err := c.attempt(ctx, body, texts, dims, out)
		if err == nil {
			return tokens, nil
		}
		wait, again := c.retryWait(ctx, err, attempt)
		if !again {
			return 0, err
		}
		if serr := c.cfg.Sleep(ctx, wait); serr != nil {
			return 0, fmt.Errorf("%w (gave up waiting to retry: %w)", err, serr)
		}
	}
}

// retryWait decides whether err is worth another attempt and how long to wait.
func (c *Client) retryWait(ctx context.Context, err error, attempt int) (time.Duration, bool) {
	if attempt >= c.cfg.MaxRetries || ctx.Err() != nil {
		return 0, false
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) && !retryable(apiErr.StatusCode) {
		return 0, false
	}
	var bad *badAnswerError
	if errors.As(err, &bad) {
		return 0, false
	}
	wait := c.backoff(attempt)
	if apiErr != nil && apiErr.RetryAfter > 0 {
		if apiErr.RetryAfter > c.cfg.MaxRetryAfter {
			return 0, false
		}
		wait = apiErr.RetryAfter
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
		// Waiting would outlive the caller: fail now, so a fallback can serve.
		return 0, false
	}
	return wait, true
}

// backoff is full jitter over an exponentially growing cap.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.cfg.InitialBackoff << min(attempt, 20)
	if ceiling <= 0 || ceiling > c.cfg.MaxBackoff {
		ceiling = c.cfg.MaxBackoff
	}
	return time.Duration(rand.Int64N(int64(ceiling))) + 1
}

// badAnswerError is a 2xx answer that does not fit the request: not retried.
type badAnswerError struct{ msg string }

func (e *badAnswerError) Error() string { return "openai: bad answer: " + e.msg }

func (c *Client) attempt(ctx context.Context, body []byte, texts []string, dims int, out [][]float32) (int, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(actx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("openai: build request: %s", c.redact(err.Error()))
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	if c.cfg.APIKey != "" {
		if c.cfg.APIKeyHeader != "" {
			hreq.Header.Set(c.cfg.APIKeyHeader, c.cfg.APIKey)
		} else {
			hreq.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
		}
	}
	resp, err := c.cfg.HTTPClient.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("openai: no answer within %s", c.cfg.Timeout)
		}
		// url.Error quotes the URL; strip credentials from it.
		return 0, fmt.Errorf("openai: %s", c.redact(err.Error()))
	}
	defer func() { _ = resp.Body.Close() }()
	// Vectors of 2048 texts at 3072 dimensions in JSON stay well under 256 MiB.
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("openai: read answer: %s", c.redact(err.Error()))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 0, &APIError{StatusCode: resp.StatusCode, Message: c.errorMessage(data), RetryAfter: retryAfter(resp.Header)}
	}
	var er embedResponse
	if err := json.Unmarshal(data, &er); err != nil {
		return 0, &badAnswerError{msg: "not an embeddings answer"}
	}
	if len(er.Data) != len(texts) {
		return 0, &badAnswerError{msg: fmt.Sprintf("%d embeddings for %d texts", len(er.Data), len(texts))}
	}
	for i := range out {
		out[i] = nil
	}
	for _, d := range er.Data {
		if d.Index < 0 || d.Index >= len(out) || out[d.Index] != nil {
			return 0, &badAnswerError{msg: fmt.Sprintf("embedding index %d out of place", d.Index)}
		}
		if dims != 0 && len(d.Embedding) != dims {
			return 0, &badAnswerError{msg: fmt.Sprintf("%d-dimensional embedding, want %d", len(d.Embedding), dims)}
		}
		if len(d.Embedding) == 0 {
			return 0, &badAnswerError{msg: "empty embedding"}
		}
		out[d.Index] = d.Embedding
	}
	if dims == 0 {
		// Unknown dimension: the answers must agree with each other and with
		// the first answer ever seen.
		c.learnt.CompareAndSwap(0, int64(len(out[0])))
		for _, v := range out {
			if int64(len(v)) != c.learnt.Load() {
				return 0, &badAnswerError{msg: "embeddings of different lengths"}
			}
		}
	}
	tokens := er.Usage.PromptTokens
	if tokens == 0 {
		for _, t := range texts {
			tokens += embedder.EstimateTokens(t)
		}
	}
	return tokens, nil
}

// errorMessage extracts the server's message: {"error":{"message":...}},
// {"error":"..."} or plain text, cut to 300 characters and with secrets removed.
func (c *Client) errorMessage(data []byte) string {
	msg := strings.TrimSpace(string(data))
	var eb errorBody
	if json.Unmarshal(data, &eb) == nil && len(eb.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
		}
		var s string
		switch {
		case json.Unmarshal(eb.Error, &obj) == nil && obj.Message != "":
			msg = obj.Message
		case json.Unmarshal(eb.Error, &s) == nil:
			msg = s
		}
	}
	msg = c.redact(msg)
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "?")
	}
	return truncateRunes(msg, 300)
}

func (c *Client) redact(s string) string { return c.redactor.Replace(s) }

// retryAfter reads retry-after-ms (OpenAI) or Retry-After (seconds or an HTTP
// date); zero when absent or unreadable.
func retryAfter(h http.Header) time.Duration {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < 1e9 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 || s > 1e6 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
