package embedder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Errors of Router.Embed, for callers to map to their API.
var (
	// ErrUnknownModel: no provider serves the model asked for.
	ErrUnknownModel = errors.New("embedder: unknown model")
	// ErrUnavailable: no provider could serve (circuits open, calls failed).
	ErrUnavailable = errors.New("embedder: no provider available")
)

// CircuitState is a provider's circuit breaker state.
type CircuitState int

// Circuit breaker states; the values are those of the circuit_state metric.
const (
	CircuitClosed CircuitState = iota
	CircuitHalfOpen
	CircuitOpen
)

// Breaker configures a provider's circuit breaker.
type Breaker struct {
	// Failures is how many consecutive failed calls open the circuit (default 5).
	Failures uint32
	// CoolDown is how long an open circuit stays open before trial calls are let
	// through (default 30s).
	CoolDown time.Duration
	// Trials is how many calls a half-open circuit lets through; that many
	// successes close it, one failure opens it again (default 1).
	Trials uint32
}

// ProviderSpec is one provider as a Router uses it.
type ProviderSpec struct {
	// Name is the configured name reported to callers, e.g. "openai".
	Name     string
	Kind     Kind
	Provider Provider
	// Cache turns the vector cache on for this provider: worth it for remote
	// APIs, not for in-process models that compute faster than a cache answers.
	Cache   bool
	Breaker Breaker
	// NamedOnly keeps the provider out of the fallback order: it serves only
	// requests that name its model.
	NamedOnly bool
}

// Options configure a Router.
type Options struct {
	// Providers in the order they are tried for requests without a model; the
	// first one serves the default model.
	Providers []ProviderSpec
	// Cache stores vectors of providers with Cache set; nil: no cache.
	Cache *Cache
	// Registerer takes the metrics; nil: not registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Router embeds through the first healthy provider able to serve a request.
type Router struct {
	entries []*entry // every provider, fallback order first
	chain   []*entry // the fallback order
	byModel map[string]*entry
	cache   *Cache
	m       *metrics
	logger  *slog.Logger
}

type entry struct {
	spec  ProviderSpec
	model Model
	cb    *gobreaker.CircuitBreaker[Result]

	mu          sync.Mutex
	lastErr     string
	lastErrTime time.Time
}

// NewRouter checks opts and builds a router.
func NewRouter(opts Options) (*Router, error) {
	if len(opts.Providers) == 0 {
		return nil, errors.New("embedder: no providers")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("embedder: register metrics: %w", err)
	}
	r := &Router{byModel: map[string]*entry{}, cache: opts.Cache, m: m, logger: opts.Logger}
	names := map[string]bool{}
	for _, spec := range opts.Providers {
		if spec.Name == "" || spec.Provider == nil {
			return nil, errors.New("embedder: every provider needs a name and an implementation")
		}
		if names[spec.Name] {
			return nil, fmt.Errorf("embedder: provider name %q used twice", spec.Name)
		}
		names[spec.Name] = true
		model := spec.Provider.Model()
		if model.Name == "" {
			return nil, fmt.Errorf("embedder: provider %q has no model name", spec.Name)
		}
		if _, dup := r.byModel[model.Name]; dup {
			return nil, fmt.Errorf("embedder: model %q served by two providers; model names must be unique", model.Name)
		}
		e := &entry{spec: spec, model: model}
		e.cb = gobreaker.NewCircuitBreaker[Result](breakerSettings(spec, m))
		m.circuit.WithLabelValues(spec.Name).Set(float64(CircuitClosed))
		r.entries = append(r.entries, e)
		if !spec.NamedOnly {
			r.chain = append(r.chain, e)
		}
		r.byModel[model.Name] = e
	}
	if len(r.chain) == 0 {
		return nil, errors.New("embedder: the fallback order is empty")
	}
	return r, nil
}

func breakerSettings(spec ProviderSpec, m *metrics) gobreaker.Settings {
	b := spec.Breaker
	if b.Failures == 0 {
		b.Failures = 5
	}
	if b.CoolDown <= 0 {
		b.CoolDown = 30 * time.Second
	}
	if b.Trials == 0 {
		b.Trials = 1
	}
	return gobreaker.Settings{
		Name:        spec.Name,
		MaxRequests: b.Trials,
		Timeout:     b.CoolDown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= b.Failures },
		OnStateChange: func(name string, _, to gobreaker.State) {
			m.circuit.WithLabelValues(name).Set(float64(circuitState(to)))
		},
		// The caller giving up, or input the provider refuses, says nothing
		// about the provider's health.
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, ErrRejected) || errors.Is(err, ErrDimensions)
		},
	}
}

func circuitState(s gobreaker.State) CircuitState {
	switch s {
	case gobreaker.StateOpen:
		return CircuitOpen
	case gobreaker.StateHalfOpen:
		return CircuitHalfOpen
	default:
		return CircuitClosed
	}
}

// DefaultModel is the model of requests that name none.
func (r *Router) DefaultModel() Model { return r.chain[0].model }

// ProviderStatus is a provider as ListModels reports it.
type ProviderStatus struct {
	Name        string
	Kind        Kind
	Model       Model
	State       CircuitState
	LastError   string
	LastErrorAt time.Time
}

// Providers reports every provider in fallback order.
func (r *Router) Providers() []ProviderStatus {
	out := make([]ProviderStatus, 0, len(r.entries))
	for _, e := range r.entries {
		e.mu.Lock()
		st := ProviderStatus{
			// Asked afresh: a provider may learn its dimensions from its first
			// answer.
			Name: e.spec.Name, Kind: e.spec.Kind, Model: e.spec.Provider.Model(),
			State: circuitState(e.cb.State()), LastError: e.lastErr, LastErrorAt: e.lastErrTime,
		}
		e.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// Output is the answer of Embed.
type Output struct {
	// Vectors has one vector per text, in order.
	Vectors    [][]float32
	Model      string
	Dimensions int
	// Provider is the configured name of the provider that served.
	Provider string
	// PromptTokens counts tokens embedded by the provider (cache hits excluded).
	PromptTokens int
	// Cached is how many texts came from the cache.
	Cached int

	// fromCache marks, per distinct text, the vectors the cache answered.
	fromCache []bool
}

// Embed returns one vector per text. An empty model means the default: the
// providers are tried in order, skipping those whose circuit is open or that
// fail, and the answer names the one that served. A named model is served by
// its provider only; when that is down, the error matches ErrUnavailable.
// dims asks for shorter vectors from models that can make them (0: the model's
// own length).
func (r *Router) Embed(ctx context.Context, texts []string, model string, dims int) (*Output, error) {
	if len(texts) == 0 {
		return &Output{Model: r.chain[0].model.Name, Dimensions: r.chain[0].model.Dimensions, Provider: r.chain[0].spec.Name}, nil
	}
	candidates := r.chain
	if model != "" {
		e, ok := r.byModel[model]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownModel, model)
		}
		if !serves(e.model, dims) {
			return nil, fmt.Errorf("%w: %s makes %d-dimensional vectors", ErrDimensions, e.model.Name, e.model.Dimensions)
		}
		candidates = []*entry{e}
	} else if !serves(r.chain[0].model, dims) {
		return nil, fmt.Errorf("%w: the default model %s makes %d-dimensional vectors", ErrDimensions, r.chain[0].model.Name, r.chain[0].model.Dimensions)
	}

	// Each distinct text is embedded once.
	uniq, index := dedupe(texts)

	var failures []string
	for i, e := range candidates {
		if !serves(e.model, dims) {
			continue
		}
		out, err := r.embedWith(ctx, e, uniq, dims)
		if err == nil {
			if i > 0 {
				r.m.fallbacks.WithLabelValues(candidates[0].spec.Name, e.spec.Name).Inc()
				r.logger.WarnContext(ctx, "embedding served by a fallback provider",
					"default", candidates[0].spec.Name, "provider", e.spec.Name, "skipped", failures)
			}
			vectors := make([][]float32, len(texts))
			cached := 0
			for j, k := range index {
				vectors[j] = out.Vectors[k]
				if out.fromCache != nil && out.fromCache[k] {
					cached++
				}
			}
			out.Vectors, out.Cached, out.fromCache = vectors, cached, nil
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, ErrRejected) || errors.Is(err, ErrDimensions) {
			return nil, err
		}
		failures = append(failures, e.spec.Name+": "+err.Error())
	}
	if model != "" {
		return nil, fmt.Errorf("%w: model %s: %s", ErrUnavailable, model, failures[0])
	}
	return nil, fmt.Errorf("%w: %v", ErrUnavailable, failures)
}

func serves(m Model, dims int) bool {
	return dims == 0 || dims == m.Dimensions || (m.DimensionsConfigurable && dims < m.Dimensions)
}

func dedupe(texts []string) ([]string, []int) {
	index := make([]int, len(texts))
	seen := make(map[string]int, len(texts))
	uniq := make([]string, 0, len(texts))
	for i, t := range texts {
		k, ok := seen[t]
		if !ok {
			k = len(uniq)
			seen[t] = k
			uniq = append(uniq, t)
		}
		index[i] = k
	}
	return uniq, index
}

// cacheTimeout bounds each cache round trip, so a cache that is down slows
// requests by little; they are then served by the providers.
const cacheTimeout = 250 * time.Millisecond

// embedWith serves texts (all distinct) from e, through the cache when e uses
// one.
func (r *Router) embedWith(ctx context.Context, e *entry, texts []string, dims int) (*Output, error) {
	name, model := e.spec.Name, e.model.Name
	wantDims := dims
	if wantDims == 0 {
		wantDims = e.model.Dimensions
	}
	out := &Output{Vectors: make([][]float32, len(texts)), Model: model, Provider: name}

	missing := texts
	var missIdx []int
	useCache := e.spec.Cache && r.cache != nil
	if useCache {
		cctx, cancel := context.WithTimeout(ctx, cacheTimeout)
		cached, err := r.cache.Get(cctx, model, wantDims, texts)
		cancel()
		out.fromCache = make([]bool, len(texts))
		if err != nil {
			r.m.cache.WithLabelValues(model, "error").Add(float64(len(texts)))
			r.logger.WarnContext(ctx, "embedding cache read failed", "err", err)
		}
		missing = missing[:0:0]
		for i, v := range cached {
			if v != nil {
				out.Vectors[i] = v
				out.fromCache[i] = true
				out.Cached++
				continue
			}
			missing = append(missing, texts[i])
			missIdx = append(missIdx, i)
		}
		if err == nil {
			r.m.cache.WithLabelValues(model, "hit").Add(float64(out.Cached))
			r.m.cache.WithLabelValues(model, "miss").Add(float64(len(missing)))
		}
		r.m.texts.WithLabelValues(name, model, "cache").Add(float64(out.Cached))
	}

	if len(missing) > 0 {
		// Checked after the cache, so cached texts are served even while the
		// provider is down.
		if e.cb.State() == gobreaker.StateOpen {
			r.m.errors.WithLabelValues(name, "circuit_open").Inc()
			return nil, gobreaker.ErrOpenState
		}
		start := time.Now()
		res, err := e.cb.Execute(func() (Result, error) {
			res, err := e.spec.Provider.Embed(ctx, missing, dims)
			if err == nil && len(res.Vectors) != len(missing) {
				err = fmt.Errorf("provider %s returned %d vectors for %d texts", name, len(res.Vectors), len(missing))
			}
			return res, err
		})
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		r.m.latency.WithLabelValues(name, model, outcome).Observe(time.Since(start).Seconds())
		if err != nil {
			r.recordError(ctx, e, err)
			return nil, err
		}
		r.m.tokens.WithLabelValues(name, model).Add(float64(res.PromptTokens))
		r.m.texts.WithLabelValues(name, model, "provider").Add(float64(len(missing)))
		out.PromptTokens = res.PromptTokens
		if useCache {
			for k, i := range missIdx {
				out.Vectors[i] = res.Vectors[k]
			}
			cctx, cancel := context.WithTimeout(ctx, cacheTimeout)
			err := r.cache.Put(cctx, model, wantDims, missing, res.Vectors)
			cancel()
			if err != nil {
				r.logger.WarnContext(ctx, "embedding cache write failed", "err", err)
			}
		} else {
			copy(out.Vectors, res.Vectors)
		}
	}
	out.Dimensions = len(out.Vectors[0])
	return out, nil
}

func (r *Router) recordError(ctx context.Context, e *entry, err error) {
	kind := "unavailable"
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		kind = "circuit_open"
	case errors.Is(err, ErrRejected), errors.Is(err, ErrDimensions):
		kind = "rejected"
	case ctx.Err() != nil:
		return
	}
	r.m.errors.WithLabelValues(e.spec.Name, kind).Inc()
	if kind == "circuit_open" {
		return
	}
	// Provider errors are built without secrets (see package openai).
	e.mu.Lock()
	e.lastErr = err.Error()
	e.lastErrTime = time.Now()
	e.mu.Unlock()
	r.logger.WarnContext(ctx, "embedding provider failed", "provider", e.spec.Name, "model", e.model.Name, "err", err)
}
