package usage

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
)

// queueCollector exports the work queues' backlog (outboxes, webhook deliveries,
// memories waiting for their embedding) at scrape time, so Prometheus alerts on
// the same figures ListQueues shows.
type queueCollector struct {
	mon                          *monitor
	depth, inFlight, failed, age *prometheus.Desc
}

func newQueueCollector(m *monitor) *queueCollector {
	labels := []string{"queue", "kind", "service"}
	return &queueCollector{
		mon: m,
		depth: prometheus.NewDesc("manushya_queue_depth",
			"Items waiting in a work queue (outbox events, webhook deliveries, memories awaiting their embedding).", labels, nil),
		inFlight: prometheus.NewDesc("manushya_queue_in_flight",
			"Items of a work queue being worked on now.", labels, nil),
		failed: prometheus.NewDesc("manushya_queue_failed",
			"Items of a work queue whose last attempt failed and that wait for a retry (not part of the depth).", labels, nil),
		age: prometheus.NewDesc("manushya_queue_oldest_age_seconds",
			"How long the oldest waiting item of a work queue has been due.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.inFlight
	ch <- c.failed
	ch <- c.age
}

// Collect implements prometheus.Collector; a queue that cannot be read yields no
// series rather than a failed scrape.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	queues, err := c.mon.queues(ctx, adminv1.QueueKind_QUEUE_KIND_UNSPECIFIED)
	if err != nil {
		return
	}
	for _, q := range queues {
		kind := strings.ToLower(strings.TrimPrefix(q.GetKind().String(), "QUEUE_KIND_"))
		lv := []string{q.GetName(), kind, q.GetService()}
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(q.GetDepth()), lv...)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(q.GetInFlightCount()), lv...)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(q.GetFailedCount()), lv...)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, q.GetOldestAge().AsDuration().Seconds(), lv...)
	}
}
