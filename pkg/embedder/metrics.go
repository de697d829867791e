package embedder

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	latency   *prometheus.HistogramVec
	tokens    *prometheus.CounterVec
	texts     *prometheus.CounterVec
	errors    *prometheus.CounterVec
	fallbacks *prometheus.CounterVec
	circuit   *prometheus.GaugeVec
	cache     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "manushya_embedding_provider_duration_seconds",
			Help:    "Time a provider took to embed one batch, by provider, model and outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"provider", "model", "outcome"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_embedding_tokens_total",
			Help: "Tokens embedded by providers (cache hits excluded), as reported or estimated.",
		}, []string{"provider", "model"}),
		texts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_embedding_texts_total",
			Help: "Texts answered, by provider, model and source (provider or cache).",
		}, []string{"provider", "model", "source"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_embedding_provider_errors_total",
			Help: "Failed provider calls, by provider and kind (unavailable, rejected, circuit_open).",
		}, []string{"provider", "kind"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_embedding_fallbacks_total",
			Help: "Requests for the default model served by a later provider of the fallback order.",
		}, []string{"from", "to"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "manushya_embedding_circuit_state",
			Help: "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
		}, []string{"provider"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_embedding_cache_lookups_total",
			Help: "Embedding cache lookups per text, by model and result (hit, miss, error).",
		}, []string{"model", "result"}),
	}
	if reg == nil {
		return m, nil
	}
	// A Router built again in the same process (tests, a restarted module)
	// shares the collectors registered first.
	var err error
	register(reg, &m.latency, &err)
	register(reg, &m.tokens, &err)
	register(reg, &m.texts, &err)
	register(reg, &m.errors, &err)
	register(reg, &m.fallbacks, &err)
	register(reg, &m.circuit, &err)
	register(reg, &m.cache, &err)
	return m, err
}

func register[C prometheus.Collector](reg prometheus.Registerer, c *C, errp *error) {
	if *errp != nil {
		return
	}
	err := reg.Register(*c)
	if err == nil {
		return
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if prev, ok := already.ExistingCollector.(C); ok {
			*c = prev
			return
		}
	}
	*errp = err
}
