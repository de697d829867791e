package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the default name of the one stream that captures all events.
const StreamName = "MANUSHYA"

// StreamOptions shape the events stream. Zero fields take the defaults of
// DefaultStreamOptions.
type StreamOptions struct {
	Name     string
	Subjects []string
	// Storage defaults to file storage (the zero value), so events survive a
	// NATS restart.
	Storage  jetstream.StorageType
	Replicas int
	MaxAge   time.Duration
	// Duplicates is the Nats-Msg-Id deduplication window. It bounds how late
	// a relay retry can come and still be recognised as a duplicate.
	Duplicates time.Duration
}

// DefaultStreamOptions returns MANUSHYA on manushya.>, file storage, one replica,
// seven days of history, a two minute duplicate window.
func DefaultStreamOptions() StreamOptions {
	return StreamOptions{
		Name:       StreamName,
		Subjects:   []string{SubjectPrefix + ".>"},
		Storage:    jetstream.FileStorage,
		Replicas:   1,
		MaxAge:     7 * 24 * time.Hour,
		Duplicates: 2 * time.Minute,
	}
}

func (o StreamOptions) withDefaults() StreamOptions {
	return o.withDefaultsFrom(DefaultStreamOptions())
}

func (o StreamOptions) withDefaultsFrom(d StreamOptions) StreamOptions {
	if o.Name == "" {
		o.Name = d.Name
	}
	if len(o.Subjects) == 0 {
		o.Subjects = d.Subjects
	}
	if o.Replicas == 0 {
		o.Replicas = d.Replicas
	}
	if o.MaxAge == 0 {
		o.MaxAge = d.MaxAge
	}
	if o.Duplicates == 0 {
		o.Duplicates = d.Duplicates
	}
	return o
}

// Option configures Connect.
type Option func(*config)

type config struct {
	logger   *slog.Logger
	natsOpts []nats.Option
	stream   StreamOptions
	audit    StreamOptions
}

// WithLogger sets the logger for connection state changes (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithNATSOptions adds nats.go options, applied after Connect's own defaults
// so they can override them (ReconnectWait in tests, credentials, TLS...).
// Handlers set this way still run: Connect wraps them rather than replacing them.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(c *config) { c.natsOpts = append(c.natsOpts, opts...) }
}

// WithStream sets the stream EnsureStream creates and Consumer attaches to.
func WithStream(s StreamOptions) Option {
	return func(c *config) { c.stream = s }
}

// Bus is a NATS connection with its JetStream context.
type Bus struct {
	Conn *nats.Conn
	JS   jetstream.JetStream

	stream StreamOptions
	// audit is the audit stream (audit.go); auditPrefix its subjects' first token.
	audit       StreamOptions
	auditPrefix string
	closed      chan struct{}
}

const (
	// reconnectBufSize holds publishes made while disconnected; the outbox
	// relay does not rely on it (it retries from PostgreSQL), but other
	// publishers get a few seconds of grace.
	reconnectBufSize = 8 << 20
	// asyncAckTimeout fails an async publish whose ack never comes, so its
	// pending slot is freed; without it a lost ack would be pending forever.
	asyncAckTimeout = 10 * time.Second
)

// Connect dials url (one server URL or a comma-separated list), retrying until the first connection succeeds or ctx is
// done, and then reconnects forever. name identifies the client in NATS
// monitoring (use the service or target name).
func Connect(ctx context.Context, url string, name string, opts ...Option) (*Bus, error) {
	cfg := config{logger: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.stream = cfg.stream.withDefaults()
	cfg.audit = cfg.audit.withDefaultsFrom(DefaultAuditStreamOptions())
	auditPrefix, _, _ := strings.Cut(cfg.audit.Subjects[0], ".")
	log := cfg.logger.With("nats_client", name)

	no := nats.GetDefaultOptions()
	// The same list handling as nats.Connect: url may name several servers.
	for u := range strings.SplitSeq(url, ",") {
		no.Servers = append(no.Servers, strings.TrimSpace(u))
	}
	defaults := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectBufSize(reconnectBufSize),
		// Keep retrying the first connection too, so a service may start
		// before NATS; ctx bounds how long Connect itself waits.
		nats.RetryOnFailedConnect(true),
		// Notice a dead server within about a minute instead of the default four.
		nats.PingInterval(20 * time.Second),
		nats.MaxPingsOutstanding(3),
	}
	for _, o := range append(defaults, cfg.natsOpts...) {
		if err := o(&no); err != nil {
			return nil, fmt.Errorf("nats option: %w", err)
		}
	}

	connected := make(chan struct{})
	var connectedOnce sync.Once
	closed := make(chan struct{})
	userConnected, userDisconnected, userReconnected, userClosed, userErr :=
		no.ConnectedCB, no.DisconnectedErrCB, no.ReconnectedCB, no.ClosedCB, no.AsyncErrorCB
	no.ConnectedCB = func(c *nats.Conn) {
		connectedOnce.Do(func() { close(connected) })
		log.Info("nats connected", "url", c.ConnectedUrlRedacted())
		if userConnected != nil {
			userConnected(c)
		}
	}
	no.DisconnectedErrCB = func(c *nats.Conn, err error) {
		if err != nil {
			log.Warn("nats disconnected", "err", err)
		}
		if userDisconnected != nil {
			userDisconnected(c, err)
		}
	}
	no.ReconnectedCB = func(c *nats.Conn) {
		log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		if userReconnected != nil {
			userReconnected(c)
		}
	}
	no.ClosedCB = func(c *nats.Conn) {
		close(closed)
		if userClosed != nil {
			userClosed(c)
		}
	}
	no.AsyncErrorCB = func(c *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		log.Warn("nats async error", "subject", subject, "err", err)
		if userErr != nil {
			userErr(c, sub, err)
		}
	}

	nc, err := no.Connect()
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", redact(url), err)
	}
	// ConnectedCB is dispatched asynchronously; IsConnected spares the wait
	// when the first attempt already succeeded.
	if !nc.IsConnected() {
		select {
		case <-connected:
		case <-ctx.Done():
			nc.Close()
			return nil, fmt.Errorf("connect to nats %s: %w", redact(url), ctx.Err())
		}
	}

	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(asyncAckTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	return &Bus{Conn: nc, JS: js, stream: cfg.stream, audit: cfg.audit, auditPrefix: auditPrefix, closed: closed}, nil
}

// redact drops credentials from a server URL (or comma-separated list) so
// errors can name it.
func redact(servers string) string {
	parts := strings.Split(servers, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = nil
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// StreamName is the name of the events stream this bus uses.
func (b *Bus) StreamName() string { return b.stream.Name }

// EnsureStream creates the events stream, or updates it to the configured
// shape, and returns it. Every process may call it at start: the call is
// idempotent.
func (b *Bus) EnsureStream(ctx context.Context) (jetstream.Stream, error) {
	s := b.stream
	st, err := b.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       s.Name,
		Subjects:   s.Subjects,
		Storage:    s.Storage,
		Replicas:   s.Replicas,
		MaxAge:     s.MaxAge,
		Duplicates: s.Duplicates,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", s.Name, err)
	}
	return st, nil
}

// ConsumerOption adjusts the consumer configuration built by Consumer.
type ConsumerOption func(*jetstream.ConsumerConfig)

// DefaultMaxDeliver bounds deliveries of one message to a Consumer; it must
// exceed the number of backoff steps.
const DefaultMaxDeliver = 10

// DefaultBackOff is the redelivery schedule of a Consumer. The server uses
// the first step as the ack wait, so it must be longer than the slowest
// handler (an embedding call).
func DefaultBackOff() []time.Duration {
	return []time.Duration{
		30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	}
}

// Consumer creates (or updates) a durable pull consumer on the events stream
// with explicit acks, a bounded number of deliveries and a growing redelivery
// backoff. filterSubjects are subject filters such as TypeFilter("memory.created").
func (b *Bus) Consumer(ctx context.Context, durable string, filterSubjects []string, opts ...ConsumerOption) (jetstream.Consumer, error) {
	return b.consumerOn(ctx, b.stream.Name, durable, filterSubjects, opts...)
}

func (b *Bus) consumerOn(ctx context.Context, stream, durable string, filterSubjects []string, opts ...ConsumerOption) (jetstream.Consumer, error) {
	if durable == "" || strings.ContainsAny(durable, ".*> \t\r\n") {
		return nil, fmt.Errorf("consumer name %q: must be non-empty without '.', '*', '>' or whitespace", durable)
	}
	if len(filterSubjects) == 0 {
		return nil, errors.New("consumer " + durable + ": at least one filter subject is required")
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        durable,
		FilterSubjects: filterSubjects,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		MaxDeliver:     DefaultMaxDeliver,
		BackOff:        DefaultBackOff(),
		MaxAckPending:  1000,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := b.JS.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", durable, stream, err)
	}
	return c, nil
}

// closeWait bounds Close: a drain flushes buffered publishes and pending
// deliveries, but shutdown must not hang on an unreachable server.
const closeWait = 5 * time.Second

// Close drains the connection (flushing what is buffered) and closes it.
func (b *Bus) Close() {
	if b.Conn.IsClosed() {
		return
	}
	if err := b.Conn.Drain(); err != nil {
		b.Conn.Close()
		return
	}
	select {
	case <-b.closed:
	case <-time.After(closeWait):
		b.Conn.Close()
	}
}
