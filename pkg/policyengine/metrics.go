package policyengine

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts decisions and evaluation failures. A nil *Metrics counts nothing.
type Metrics struct {
	decisions *prometheus.CounterVec
	errors    prometheus.Counter
	reloads   *prometheus.CounterVec
}

// NewMetrics registers the engine's metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_policy_decisions_total",
			Help: "Authorization decisions, by outcome and whether the cache answered.",
		}, []string{"decision", "cached"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "manushya_policy_evaluation_errors_total",
			Help: "Policy evaluations that failed (and failed closed).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_policy_reloads_total",
			Help: "Tenant policy-set loads, by result.",
		}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.decisions, m.errors, m.reloads} {
			// A second engine in one process (tests) shares the first one's series.
			_ = reg.Register(c)
		}
	}
	return m
}

func (m *Metrics) decided(allow, cached bool) {
	if m == nil {
		return
	}
	d := "deny"
	if allow {
		d = "allow"
	}
	c := "false"
	if cached {
		c = "true"
	}
	m.decisions.WithLabelValues(d, c).Inc()
}

func (m *Metrics) failed() {
	if m == nil {
		return
	}
	m.errors.Inc()
}

func (m *Metrics) reloaded(err error) {
	if m == nil {
		return
	}
	r := "ok"
	if err != nil {
		r = "error"
	}
	m.reloads.WithLabelValues(r).Inc()
}

func fmtAny(v any) string { return fmt.Sprintf("%T:%v", v, v) }
