package webhooks

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// deliveryMetrics count delivery attempts and finished deliveries, for the
// "webhooks failing" alert (deploy/prometheus) and the dashboard.
type deliveryMetrics struct {
	attempts   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	deliveries *prometheus.CounterVec
}

// Final states of a delivery, as labels.
const (
	finalSucceeded = "succeeded"
	finalFailed    = "failed"
	finalDead      = "dead"
)

// Outcomes of one attempt.
const (
	attemptSucceeded      = "succeeded"       // a 2xx answer
	attemptHTTPError      = "http_error"      // any other answer
	attemptTransportError = "transport_error" // no answer: refused, timed out, blocked address
)

// newDeliveryMetrics registers the metrics on reg; nil reg keeps them unexported.
// Registered already (another webhooks module in the process) shares those series.
func newDeliveryMetrics(reg prometheus.Registerer) (*deliveryMetrics, error) {
	m := &deliveryMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_webhook_attempts_total",
			Help: "Webhook delivery attempts by outcome: succeeded (2xx), http_error (another status), transport_error (no response).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "manushya_webhook_attempt_duration_seconds",
			Help:    "Time from sending a webhook to its receiver's answer (or the failure), by outcome.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"outcome"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_webhook_deliveries_total",
			Help: "Webhook deliveries that reached a final state: succeeded, failed (endpoint gone or disabled) or dead (retries exhausted).",
		}, []string{"outcome"}),
	}
	// Pre-create the series so rates are 0, not absent, before the first failure.
	for _, o := range []string{attemptSucceeded, attemptHTTPError, attemptTransportError} {
		m.attempts.WithLabelValues(o)
	}
	for _, o := range []string{finalSucceeded, finalFailed, finalDead} {
		m.deliveries.WithLabelValues(o)
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range []prometheus.Collector{m.attempts, m.latency, m.deliveries} {
		if err := reg.Register(c); err != nil {
			already, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
			if !ok {
				return nil, err
			}
			switch i {
			case 0:
				m.attempts = already.ExistingCollector.(*prometheus.CounterVec)
			case 1:
				m.latency = already.ExistingCollector.(*prometheus.HistogramVec)
			case 2:
				m.deliveries = already.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return m, nil
}

// observe counts one recorded attempt and, when it ended the delivery, the
// delivery's final state (final is "" while the delivery is retried).
func (m *deliveryMetrics) observe(res result, final string) {
	if m == nil {
		return
	}
	a := res.attempt
	outcome := attemptSucceeded
	switch {
	case a.GetResponseStatusCode() == 0:
		outcome = attemptTransportError
	case !res.success():
		outcome = attemptHTTPError
	}
	m.attempts.WithLabelValues(outcome).Inc()
	m.latency.WithLabelValues(outcome).Observe(a.GetLatency().AsDuration().Seconds())
	if final != "" {
		m.deliveries.WithLabelValues(final).Inc()
	}
}
