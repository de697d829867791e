package usage

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/manushya-ai/manushya/pkg/bus"
)

// lagCollector exports the JetStream consumers' backlog at scrape time, so
// Prometheus alerts on the same figures ListConsumers shows.
type lagCollector struct {
	bus                *bus.Bus
	pending, ackPend   *prometheus.Desc
	redelivered, waits *prometheus.Desc
}

func newLagCollector(b *bus.Bus) *lagCollector {
	labels := []string{"stream", "consumer"}
	return &lagCollector{
		bus: b,
		pending: prometheus.NewDesc("manushya_jetstream_consumer_pending_messages",
			"Messages in the stream not yet delivered to the consumer (its lag).", labels, nil),
		ackPend: prometheus.NewDesc("manushya_jetstream_consumer_ack_pending_messages",
			"Messages delivered to the consumer and not yet acknowledged.", labels, nil),
		redelivered: prometheus.NewDesc("manushya_jetstream_consumer_redelivered_messages",
			"Messages delivered more than once and not yet acknowledged.", labels, nil),
		waits: prometheus.NewDesc("manushya_jetstream_consumer_waiting_pulls",
			"Pull requests waiting; 0 means no worker is pulling.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPend
	ch <- c.redelivered
	ch <- c.waits
}

// Collect implements prometheus.Collector; a stream that cannot be read yields no
// series rather than a failed scrape.
func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.bus.JS.Stream(ctx, c.bus.StreamName())
	if err != nil {
		return
	}
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		lv := []string{c.bus.StreamName(), info.Name}
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), lv...)
		ch <- prometheus.MustNewConstMetric(c.ackPend, prometheus.GaugeValue, float64(info.NumAckPending), lv...)
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(info.NumRedelivered), lv...)
		ch <- prometheus.MustNewConstMetric(c.waits, prometheus.GaugeValue, float64(info.NumWaiting), lv...)
	}
}
