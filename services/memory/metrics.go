package memory

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the memory service; registered when the module has a Registerer.
type metrics struct {
	search   *prometheus.HistogramVec // by mode that ran and path (ann, exact, keyword)
	embedded *prometheus.CounterVec   // memories by result (ready, fallback, failed)
	batch    prometheus.Histogram     // texts per Embed call
	fresh    prometheus.Gauge         // stored vectors not yet in the HNSW graph, as the indexer last found them
	indexed  prometheus.Counter       // vectors the indexer put in the graph
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		search: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "manushya", Subsystem: "memory", Name: "search_seconds",
			Help:    "Latency of SearchMemories by the mode that ran.",
			Buckets: []float64{.001, .0025, .005, .01, .015, .025, .05, .1, .25, .5, 1},
		}, []string{"mode"}),
		embedded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "manushya", Subsystem: "memory", Name: "embeddings_total",
			Help: "Memories embedded by the asynchronous embedder, by result.",
		}, []string{"result"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "manushya", Subsystem: "memory", Name: "embed_batch_texts",
			Help:    "Texts per call to the embedding service.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		fresh: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "manushya", Subsystem: "memory", Name: "fresh_vectors",
			Help: "Stored vectors not yet in the HNSW graph (searched by exact scan), as the indexer's last pass found them.",
		}),
		indexed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "manushya", Subsystem: "memory", Name: "vectors_indexed_total",
			Help: "Vectors the background indexer put in the HNSW graph.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.search, m.embedded, m.batch, m.fresh, m.indexed} {
			// Only a second module on the same registry fails here; it then
			// counts into collectors nobody scrapes, which is harmless.
			_ = reg.Register(c)
		}
	}
	return m
}
