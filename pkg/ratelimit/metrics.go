package ratelimit

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	decisions     *prometheus.CounterVec
	backendErrors prometheus.Counter
	fallback      prometheus.Gauge
	reloads       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_ratelimit_decisions_total",
			Help: "Rate limit decisions by scope, route group of the limit and outcome (allowed, limited, shadow_limited).",
		}, []string{"scope", "route_group", "decision"}),
		backendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "manushya_ratelimit_backend_errors_total",
			Help: "Rate limit decisions Redis failed to answer (the fallback answered).",
		}),
		fallback: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "manushya_ratelimit_fallback_active",
			Help: "1 while Redis is unavailable and the rate limiter uses its fallback.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_ratelimit_limit_loads_total",
			Help: "Loads of stored rate limits by result (ok, error).",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.decisions, err = register(reg, m.decisions)
	if err != nil {
		return nil, err
	}
	if m.backendErrors, err = register(reg, m.backendErrors); err != nil {
		return nil, err
	}
	if m.fallback, err = register(reg, m.fallback); err != nil {
		return nil, err
	}
	if m.reloads, err = register(reg, m.reloads); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under its
// name (several limiters in one process share the series).
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if err := reg.Register(c); err != nil {
		if already, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := already.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		var zero T
		return zero, err
	}
	return c, nil
}
