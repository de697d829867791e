package metering

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/bus"
)

const (
	// EventRecorded is the bus event the usage service meters as a usage event of
	// the type named in its data (the usage service's usage.EventRecorded).
	EventRecorded = "usage.recorded"
	// UsageType is the usage type of served requests.
	UsageType = "api.request"
	// MaxProperties is how many properties split one usage sum. Properties are
	// dimensions with few values (a route, a search mode), never per-call data:
	// each distinct combination is a sum held and published every interval.
	MaxProperties = 4
	// Source is the CloudEvents source of the events, part of their dedup key.
	Source = "manushya/metering"
)

// Publisher publishes to JetStream; jetstream.JetStream is one.
type Publisher interface {
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Property is one dimension a usage sum is split by; it becomes one of the usage
// event's properties.
type Property struct{ Key, Value string }

// Options configure a Meter. Zero values take the defaults.
type Options struct {
	// Interval is how long calls are summed before they are published; default 2s.
	Interval time.Duration
	// MaxKeys bounds the (tenant, identity, type, properties) sums held between
	// flushes and
	// the events waiting to be published; default 100,000. Past it a flush is
	// started early, and calls that still find no room are dropped and counted.
	MaxKeys int
	// AckTimeout bounds the wait for the stream's acks of one flush; default 10s.
	AckTimeout time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// key is what quantities are summed by. A fixed array keeps it comparable, so a
// sum is one map update with no allocation.
type key struct {
	tenant, identity, typ string
	props                 [MaxProperties]Property
}

// Meter sums usage (served calls, searches...) in process and publishes the sums.
type Meter struct {
	opts     Options
	logger   *slog.Logger
	instance uuid.UUID // this process: ids differ between processes

	mu     sync.Mutex
	counts map[key]int64
	since  time.Time // start of the interval being counted

	pubMu  sync.Mutex // one flush at a time; guards unsent
	unsent []bus.Event

	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	startOnce sync.Once
	started   atomic.Bool
	closed    atomic.Bool

	requests  prometheus.Counter
	units     *prometheus.CounterVec
	published prometheus.Counter
	dropped   *prometheus.CounterVec
}

// New returns a meter; it counts at once and publishes after Start.
func New(opts Options) *Meter {
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = 100_000
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Meter{
		opts: opts, logger: opts.Logger.With("component", "metering"), instance: uuid.New(),
		counts: map[key]int64{}, since: time.Now(),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		requests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "manushya_metering_requests_total",
			Help: "Served calls counted as api.request usage.",
		}),
		units: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_metering_units_total",
			Help: "Units of usage summed by the meter, by usage type (api.request calls, memory.search searches...).",
		}, []string{"type"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "manushya_metering_events_published_total",
			Help: "usage.recorded events acknowledged by the stream (each sums the usage of one tenant, identity, type and set of properties over an interval).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "manushya_metering_dropped_total",
			Help: "Counts (reason full) or usage events (reason invalid, backlog) that were not metered.",
		}, []string{"reason"}),
	}
	if opts.Registerer != nil {
		for i, c := range []prometheus.Collector{m.requests, m.published, m.dropped, m.units} {
			err := opts.Registerer.Register(c)
			if err == nil {
				continue
			}
			already, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
			if !ok {
				// A clash with another metric's definition: metering still works,
				// unexported.
				m.logger.Error("metering metrics not registered", "err", err)
				break
			}
			// Another meter of this process exports them: share its series.
			switch i {
			case 0:
				m.requests = already.ExistingCollector.(prometheus.Counter)
			case 1:
				m.published = already.ExistingCollector.(prometheus.Counter)
			case 2:
				m.dropped = already.ExistingCollector.(*prometheus.CounterVec)
			case 3:
				m.units = already.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return m
}

// UnaryServerInterceptor counts each call once it has been served. It belongs among
// grpcserver's observers, which run after authentication: the principal is known.
func (m *Meter) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		// A call refused for rate or quota was not served.
		if status.Code(err) != codes.ResourceExhausted {
			m.Count(ctx, info.FullMethod)
		}
		return resp, err
	}
}

// Count records one call of method by the request's principal. Anonymous calls and
// services working on their own behalf are not usage of anyone.
func (m *Meter) Count(ctx context.Context, method string) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.TenantID == "" || p.IsInternal() {
		return
	}
	props := []Property{{"route", method}}
	if a, err := authz.AccessFor(method); err == nil && a.Permission != "" {
		props = append(props, Property{"route_group", a.Permission})
	}
	if m.add(p.TenantID, p.IdentityID, UsageType, 1, props) {
		m.requests.Inc()
	}
}

// Add records quantity units of usageType used by identity ("" for none) in
// tenant, summed with the other units of the same properties until the next
// flush. Properties are matched by position, so a caller passes them in a fixed
// order; those past MaxProperties are ignored. Counting is one map update under a
// mutex, cheap enough for any request path. A tenant that is not a UUID is
// dropped when its interval is published.
func (m *Meter) Add(tenant, identity, usageType string, quantity int64, props ...Property) {
	if m == nil || tenant == "" || usageType == "" || quantity <= 0 {
		return
	}
	m.add(tenant, identity, usageType, quantity, props)
}

// add sums quantity under its key; false when the meter is full and it was
// dropped.
func (m *Meter) add(tenant, identity, usageType string, quantity int64, props []Property) bool {
	k := key{tenant: tenant, identity: identity, typ: usageType}
	copy(k.props[:], props)
	m.mu.Lock()
	n, seen := m.counts[k]
	full := !seen && len(m.counts) >= m.opts.MaxKeys
	if !full {
		m.counts[k] = n + quantity
	}
	size := len(m.counts)
	m.mu.Unlock()
	if full {
		m.dropped.WithLabelValues("full").Inc()
		m.flushSoon()
		return false
	}
	m.units.WithLabelValues(usageType).Add(float64(quantity))
	if !seen && size >= m.opts.MaxKeys/2 {
		m.flushSoon()
	}
	return true
}

func (m *Meter) flushSoon() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Start publishes with pub every interval until Close. Only the first call starts
// the loop.
func (m *Meter) Start(pub Publisher) {
	m.startOnce.Do(func() {
		m.started.Store(true)
		go m.run(pub)
	})
}

func (m *Meter) run(pub Publisher) {
	defer close(m.done)
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-m.kick:
		case <-m.stop:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.AckTimeout)
		if err := m.Flush(ctx, pub); err != nil {
			m.logger.Warn("usage not published; will retry", "err", err)
		}
		cancel()
	}
}

// Close stops the loop and publishes what was counted, within ctx.
func (m *Meter) Close(ctx context.Context, pub Publisher) error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	if m.started.Load() {
		close(m.stop)
		select {
		case <-m.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if pub == nil {
		return nil
	}
	return m.Flush(ctx, pub)
}

// usageData is the data of a usage.recorded event.
type usageData struct {
	Type       string            `json:"type"`
	Quantity   int64             `json:"quantity"`
	IdentityID string            `json:"identity_id,omitempty"`
	Properties map[string]string `json:"properties"`
}

// cut ends the interval being counted and turns its sums into events.
func (m *Meter) cut(now time.Time) []bus.Event {
	m.mu.Lock()
	counts, since := m.counts, m.since
	m.counts, m.since = make(map[key]int64, len(counts)), now
	m.mu.Unlock()
	events := make([]bus.Event, 0, len(counts))
	for k, n := range counts {
		props := make(map[string]string, MaxProperties)
		// The id hashes every part of the key, each length-prefixed so no two
		// keys can render alike.
		seed := fmt.Appendf(nil, "%d|%d:%s|%d:%s|%d:%s", since.UnixNano(), len(k.tenant), k.tenant, len(k.identity), k.identity, len(k.typ), k.typ)
		subject := k.typ
		for i, p := range k.props {
			if p.Key == "" {
				continue
			}
			props[p.Key] = p.Value
			seed = fmt.Appendf(seed, "|%d:%s=%d:%s", len(p.Key), p.Key, len(p.Value), p.Value)
			if i == 0 {
				// The first property (an api.request's route) names the sum.
				subject = p.Value
			}
		}
		data, _ := json.Marshal(usageData{Type: k.typ, Quantity: n, IdentityID: k.identity, Properties: props})
		ev := bus.Event{
			// Fixed here, for every retry: derived from this process, the interval
			// and the key, so no two sums share an id and a resend is a duplicate.
			ID:     uuid.NewSHA1(m.instance, seed).String(),
			Tenant: k.tenant, Type: EventRecorded, Source: Source, Subject: subject, Time: now.UTC(), Data: data,
		}
		if err := ev.Validate(); err != nil {
			m.dropped.WithLabelValues("invalid").Inc()
			m.logger.Error("usage event invalid; dropped", "type", k.typ, "err", err)
			continue
		}
		events = append(events, ev)
	}
	return events
}

// Flush ends the interval being counted and publishes its sums, with any events
// earlier flushes could not publish. Events not acknowledged stay for the next
// flush, with the same ids.
func (m *Meter) Flush(ctx context.Context, pub Publisher) error {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	m.unsent = append(m.unsent, m.cut(time.Now())...)
	if over := len(m.unsent) - m.opts.MaxKeys; over > 0 {
		// A long outage: keep the newest, which are still within the usage
		// service's late window longest.
		m.dropped.WithLabelValues("backlog").Add(float64(over))
		m.logger.Error("usage backlog full; oldest events dropped", "events", over)
		m.unsent = m.unsent[over:]
	}
	if len(m.unsent) == 0 {
		return nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(m.unsent))
	var firstErr error
	for _, ev := range m.unsent {
		payload, err := ev.MarshalCloudEvent()
		if err == nil {
			var f jetstream.PubAckFuture
			if f, err = pub.PublishMsgAsync(&nats.Msg{Subject: ev.NATSSubject(), Data: payload}, jetstream.WithMsgID(ev.ID)); err == nil {
				futures = append(futures, f)
				continue
			}
		}
		// What follows would fail the same way.
		firstErr = fmt.Errorf("publish usage event %s: %w", ev.ID, err)
		break
	}
	var keep []bus.Event
	for i, f := range futures {
		select {
		case <-f.Ok():
			m.published.Inc()
			continue
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("publish usage event %s: %w", m.unsent[i].ID, err)
			}
		case <-ctx.Done():
			if firstErr == nil {
				firstErr = fmt.Errorf("publish usage events: %w", ctx.Err())
			}
		}
		keep = append(keep, m.unsent[i])
	}
	keep = append(keep, m.unsent[len(futures):]...)
	m.unsent = keep
	return firstErr
}
