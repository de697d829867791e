package audit

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/manushya-ai/manushya/pkg/bus"
)

// Publisher is the part of jetstream.JetStream the sink uses.
type Publisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// BusSinkOptions shape a BusSink. Zero values take the defaults.
type BusSinkOptions struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Buffer is the most records waiting to be published (10,000). While NATS is
	// unreachable records wait here; past it new records are dropped, counted in
	// manushya_audit_records_dropped_total and logged.
	Buffer int
	// Batch is the most records published before waiting for their
	// acknowledgements (256).
	Batch int
	// AckTimeout bounds the wait for one batch's acknowledgements (10 s).
	AckTimeout time.Duration
	// MaxBackoff is the longest pause between retries while publishing fails (5 s).
	MaxBackoff time.Duration
}

// BusSink publishes records to the audit stream of JetStream in the
// background: Record only enqueues, a loop publishes batches asynchronously and
// waits for their acknowledgements, and records whose publish failed are retried
// with backoff (same id, so the stream's duplicate window and the writer's id
// check keep a retried record single). Records wait in a bounded buffer while
// NATS is unreachable, so a NATS restart loses nothing unless the buffer fills.
type BusSink struct {
	opts BusSinkOptions
	log  *slog.Logger
	ch   chan Record

	startOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
	started   atomic.Bool
	closed    atomic.Bool

	published prometheus.Counter
	failures  prometheus.Counter
	dropped   *prometheus.CounterVec
	lastDrop  atomic.Int64 // unix nanos of the last drop log line
}

// NewBusSink builds a sink; records are kept from now on and published once
// Start is called.
func NewBusSink(opts BusSinkOptions) *BusSink {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 10_000
	}
	if opts.Batch <= 0 {
		opts.Batch = 256
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 10 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	s := &BusSink{
		opts: opts, log: opts.Logger.With("component", "audit sink"), ch: make(chan Record, opts.Buffer),
		stop: make(chan struct{}), done: make(chan struct{}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "manushya_audit_records_published_total", Help: "Audit records acknowledged by the audit stream.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "manushya_audit_publish_failures_total", Help: "Audit record publishes that failed and were retried.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_audit_records_dropped_total", Help: "Audit records lost before reaching the audit stream, by reason.",
		}, []string{"reason"}),
	}
	if opts.Registerer != nil {
		backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "manushya_audit_buffer_records", Help: "Audit records waiting to be published.",
		}, func() float64 { return float64(len(s.ch)) })
		for _, c := range []prometheus.Collector{s.published, s.failures, s.dropped, backlog} {
			if err := opts.Registerer.Register(c); err != nil {
				s.log.Warn("audit sink metric not registered", "err", err)
			}
		}
	}
	return s
}

// Record enqueues r without waiting; a full buffer drops it (counted and logged).
func (s *BusSink) Record(ctx context.Context, r Record) {
	r.fill()
	if s.closed.Load() {
		s.drop(ctx, "closed", r)
		return
	}
	select {
	case s.ch <- r:
	default:
		s.drop(ctx, "buffer_full", r)
	}
}

func (s *BusSink) drop(ctx context.Context, reason string, r Record) {
	s.dropped.WithLabelValues(reason).Inc()
	// One line per ten seconds at most: a long outage must not flood the log.
	now := time.Now().UnixNano()
	last := s.lastDrop.Load()
	if now-last >= int64(10*time.Second) && s.lastDrop.CompareAndSwap(last, now) {
		s.log.ErrorContext(ctx, "audit record dropped", "reason", reason, "tenant_id", r.TenantID, "action", r.Action,
			"record_id", r.ID, "buffer", s.opts.Buffer)
	}
}

// Start publishes to b's audit stream (which the caller ensures exists).
func (s *BusSink) Start(b *bus.Bus) { s.StartPublisher(b.JS, b.AuditSubjectOf) }

// StartPublisher publishes with pub on the subjects subject gives for each
// tenant. Only the first call starts the loop.
func (s *BusSink) StartPublisher(pub Publisher, subject func(tenant string) string) {
	s.startOnce.Do(func() {
		s.started.Store(true)
		go s.run(pub, subject)
	})
}

// Close stops taking records and publishes what is buffered, until ctx ends;
// what is still unpublished then is counted as dropped.
func (s *BusSink) Close(ctx context.Context) error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	if !s.started.Load() {
		if n := len(s.ch); n > 0 {
			s.dropped.WithLabelValues("closed").Add(float64(n))
			s.log.ErrorContext(ctx, "audit records never published: the sink was not started", "records", n)
		}
		return nil
	}
	close(s.stop)
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeGrace bounds the final flush once Close is called.
const closeGrace = 5 * time.Second

func (s *BusSink) run(pub Publisher, subject func(string) string) {
	defer close(s.done)
	var (
		pending []Record
		backoff time.Duration
		stopped bool
		flushBy time.Time
	)
	for {
		if len(pending) == 0 {
			if stopped && len(s.ch) == 0 {
				return
			}
			select {
			case r := <-s.ch:
				pending = append(pending, r)
			case <-s.stop:
				stopped, flushBy = true, time.Now().Add(closeGrace)
				continue
			}
		}
	fill:
		for len(pending) < s.opts.Batch {
			select {
			case r := <-s.ch:
				pending = append(pending, r)
			default:
				break fill
			}
		}
		pending = s.publish(pub, subject, pending)
		if len(pending) == 0 {
			backoff = 0
			continue
		}
		if stopped && time.Now().After(flushBy) {
			n := len(pending) + len(s.ch)
			s.dropped.WithLabelValues("shutdown").Add(float64(n))
			s.log.Error("audit records not published before shutdown", "records", n)
			return
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), s.opts.MaxBackoff)
		select {
		case <-time.After(backoff):
		case <-s.stop:
			stopped, flushBy = true, time.Now().Add(closeGrace)
		}
	}
}

// publish sends batch asynchronously, waits for the acknowledgements and returns
// the records to retry, in their order.
func (s *BusSink) publish(pub Publisher, subject func(string) string, batch []Record) []Record {
	futures := make([]jetstream.PubAckFuture, len(batch))
	var (
		firstErr error
		retry    []Record
	)
	for i, r := range batch {
		data, err := json.Marshal(r)
		if err != nil {
			// Cannot happen for a Record; keep the loop from retrying it forever.
			s.dropped.WithLabelValues("invalid").Inc()
			s.log.Error("audit record not encodable", "record_id", r.ID, "err", err)
			continue
		}
		msg := nats.NewMsg(subject(r.TenantID))
		msg.Header.Set(jetstream.MsgIDHeader, r.ID)
		msg.Data = data
		if futures[i], err = pub.PublishMsgAsync(msg); err != nil {
			firstErr = cmp.Or(firstErr, err)
			retry = append(retry, r)
		}
	}
	timeout := time.NewTimer(s.opts.AckTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			s.published.Inc()
		case err := <-f.Err():
			firstErr = cmp.Or(firstErr, err)
			retry = append(retry, batch[i])
		case <-timeout.C:
			firstErr = cmp.Or(firstErr, errors.New("no acknowledgement in time"))
			retry = append(retry, batch[i])
			// The timer fired once; the rest of the batch is judged without waiting.
			timeout.Reset(0)
		}
	}
	if len(retry) > 0 {
		s.failures.Add(float64(len(retry)))
		s.log.Warn("audit records not acknowledged, retrying", "records", len(retry), "err", firstErr)
	}
	return retry
}
