package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Relay defaults; see the With... options.
const (
	DefaultBatchSize    = 500
	DefaultPollInterval = time.Second
	DefaultAckTimeout   = 10 * time.Second
	DefaultMaxBackoff   = 10 * time.Second
	minBackoff          = 100 * time.Millisecond
)

// ErrNATSUnavailable is reported (through logs and Stats) while the NATS
// connection is not up; the relay does not even lock rows then.
var ErrNATSUnavailable = errors.New("nats connection is not up")

// errAckTimeout is a publish whose ack did not come within the ack timeout.
var errAckTimeout = errors.New("timed out waiting for publish acks")

// Option configures a Relay.
type Option func(*Relay)

// WithBatchSize sets how many events one pass locks, publishes and deletes.
func WithBatchSize(n int) Option {
	return func(r *Relay) {
		if n > 0 {
			r.batch = n
		}
	}
}

// WithPollInterval sets the fallback poll for when notifications are missed.
func WithPollInterval(d time.Duration) Option {
	return func(r *Relay) {
		if d > 0 {
			r.poll = d
		}
	}
}

// WithAckTimeout bounds the wait for a batch's publish acks; the batch is
// rolled back and retried after it.
func WithAckTimeout(d time.Duration) Option {
	return func(r *Relay) {
		if d > 0 {
			r.ackTimeout = d
		}
	}
}

// WithMaxBackoff caps the wait between retries while publishing fails.
func WithMaxBackoff(d time.Duration) Option {
	return func(r *Relay) {
		if d > 0 {
			r.maxBackoff = d
		}
	}
}

// WithRegisterer exports the relay's counters and backlog as Prometheus
// metrics labelled with the schema.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(r *Relay) { r.registerer = reg }
}

// Stats is a snapshot of a relay's counters since it was created.
type Stats struct {
	// Published counts events acknowledged by the stream and removed from the outbox.
	Published uint64
	// Duplicates counts those the stream reported as already stored (a retry
	// after a lost ack, or another relay's publish); they are included in Published.
	Duplicates uint64
	// Failures counts passes that failed and were retried.
	Failures uint64
	// FailingSince is when the current run of failures began; zero when healthy.
	FailingSince time.Time
}

// Relay publishes one schema's outbox to JetStream. Create it with NewRelay
// and call Run once.
type Relay struct {
	pool       *pgxpool.Pool
	js         jetstream.JetStream
	schema     string
	logger     *slog.Logger
	batch      int
	poll       time.Duration
	ackTimeout time.Duration
	maxBackoff time.Duration
	registerer prometheus.Registerer

	err       error
	selectSQL string
	deleteSQL string
	countSQL  string

	wake    chan struct{}
	running atomic.Bool

	published    atomic.Uint64
	duplicates   atomic.Uint64
	failures     atomic.Uint64
	failingSince atomic.Int64 // unix nanoseconds, 0 when healthy
}

// NewRelay returns a relay for the outbox of schema. pool needs SELECT and
// DELETE on <schema>.outbox (the app role has them); js should come from
// bus.Connect, which sets an async publish timeout. An invalid schema is
// reported by Run.
func NewRelay(pool *pgxpool.Pool, js jetstream.JetStream, schema string, logger *slog.Logger, opts ...Option) *Relay {
	if logger == nil {
		logger = slog.Default()
	}
	r := &Relay{
		pool:       pool,
		js:         js,
		schema:     schema,
		logger:     logger.With("schema", schema),
		batch:      DefaultBatchSize,
		poll:       DefaultPollInterval,
		ackTimeout: DefaultAckTimeout,
		maxBackoff: DefaultMaxBackoff,
		wake:       make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(r)
	}
	if r.err = ValidateSchema(schema); r.err != nil {
		return r
	}
	t := table(schema)
	r.selectSQL = `SELECT seq, event_id::text, subject, payload FROM ` + t + ` ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`
	r.deleteSQL = `DELETE FROM ` + t + ` WHERE seq = ANY($1)`
	r.countSQL = `SELECT count(*) FROM ` + t
	if r.registerer != nil {
		r.register()
	}
	return r
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	s := Stats{
		Published:  r.published.Load(),
		Duplicates: r.duplicates.Load(),
		Failures:   r.failures.Load(),
	}
	if ns := r.failingSince.Load(); ns != 0 {
		s.FailingSince = time.Unix(0, ns)
	}
	return s
}

// Backlog returns the number of events waiting in the outbox, including
// those a relay is publishing right now.
func (r *Relay) Backlog(ctx context.Context) (int64, error) {
	if r.err != nil {
		return 0, r.err
	}
	var n int64
	if err := r.pool.QueryRow(ctx, r.countSQL).Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox %s: count backlog: %w", r.schema, err)
	}
	return n, nil
}

// Run publishes the outbox until ctx is done, then returns nil. It returns an
// error only when the relay cannot start (invalid schema, already running).
// Failures while running (NATS or PostgreSQL down) are logged once per
// outage and retried with a capped backoff; nothing is dropped.
func (r *Relay) Run(ctx context.Context) error {
	if r.err != nil {
		return r.err
	}
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("outbox %s: relay is already running", r.schema)
	}
	defer r.running.Store(false)

	listenCtx, stopListen := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.listen(listenCtx) })
	defer func() {
		stopListen()
		wg.Wait()
	}()

	ticker := time.NewTicker(r.poll)
	defer ticker.Stop()
	backoff := minBackoff
	failures := 0
	var failedAt time.Time
	for {
		err := r.drain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			if failures > 0 {
				r.logger.Info("outbox relay publishing again",
					"failed_attempts", failures, "outage", time.Since(failedAt).Round(time.Millisecond))
				failures, backoff = 0, minBackoff
				r.failingSince.Store(0)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-r.wake:
			case <-ticker.C:
			}
			continue
		}

		r.failures.Add(1)
		failures++
		if failures == 1 {
			// Once per outage: an unreachable NATS would otherwise log every
			// backoff step for as long as it lasts.
			failedAt = time.Now()
			r.failingSince.Store(failedAt.UnixNano())
			r.logger.Warn("outbox relay cannot publish, retrying until it can", "err", err)
		} else {
			r.logger.Debug("outbox relay retry failed", "attempt", failures, "err", err)
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		backoff = min(2*backoff, r.maxBackoff)
	}
}

// drain runs passes until one finds less than a full batch.
func (r *Relay) drain(ctx context.Context) error {
	for {
		n, err := r.pass(ctx)
		if err != nil {
			return err
		}
		if n < r.batch || ctx.Err() != nil {
			return nil
		}
	}
}

type row struct {
	seq     int64
	id      string
	subject string
	payload []byte
}

// pass publishes one batch and returns how many rows it locked.
func (r *Relay) pass(ctx context.Context) (int, error) {
	// While NATS is away publishes would only pile up in the reconnect
	// buffer and hold row locks until the ack timeout; skip the pass instead.
	if st := r.js.Conn().Status(); st != nats.CONNECTED {
		return 0, fmt.Errorf("%w (%s)", ErrNATSUnavailable, st)
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("outbox %s: begin: %w", r.schema, err)
	}
	// A no-op after Commit; on every other path it releases the row locks so
	// the rows are retried.
	defer func() {
		rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rbCtx)
	}()

	rows, err := r.lockBatch(ctx, tx)
	if err != nil || len(rows) == 0 {
		return 0, err
	}

	futures := make([]jetstream.PubAckFuture, 0, len(rows))
	var publishErr error
	for _, m := range rows {
		f, err := r.js.PublishMsgAsync(&nats.Msg{Subject: m.subject, Data: m.payload}, jetstream.WithMsgID(m.id))
		if err != nil {
			// Stop at the first failure: what follows would only fail the same way.
			publishErr = fmt.Errorf("publish %s: %w", m.id, err)
			break
		}
		futures = append(futures, f)
	}

	acked := make([]int64, 0, len(futures))
	var dups uint64
	timeout := time.NewTimer(r.ackTimeout)
	defer timeout.Stop()
wait:
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			acked = append(acked, rows[i].seq)
			if ack.Duplicate {
				dups++
			}
		case err := <-f.Err():
			if publishErr == nil {
				publishErr = fmt.Errorf("publish %s: %w", rows[i].id, err)
			}
		case <-timeout.C:
			if publishErr == nil {
				publishErr = fmt.Errorf("publish %d events: %w after %s", len(futures)-i, errAckTimeout, r.ackTimeout)
			}
			break wait
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}

	// Keep what the stream acknowledged even when part of the batch failed:
	// re-sending it would only be deduplicated, and past the duplicate window
	// it would be doubled.
	if len(acked) > 0 {
		// The commit need not wait for its WAL flush: if a crash loses it,
		// the rows come back and are re-published, which the stream's
		// duplicate window absorbs (and consumers are idempotent past it).
		// That saves a disk flush per batch on the publish path.
		batch := &pgx.Batch{}
		batch.Queue("SET LOCAL synchronous_commit = off")
		batch.Queue(r.deleteSQL, acked)
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return 0, fmt.Errorf("outbox %s: delete %d published events: %w", r.schema, len(acked), err)
		}
		if err := tx.Commit(ctx); err != nil {
			return 0, fmt.Errorf("outbox %s: commit %d published events: %w", r.schema, len(acked), err)
		}
		r.published.Add(uint64(len(acked)))
		r.duplicates.Add(dups)
	}
	if publishErr != nil {
		return 0, fmt.Errorf("outbox %s: %w", r.schema, publishErr)
	}
	return len(rows), nil
}

func (r *Relay) lockBatch(ctx context.Context, tx pgx.Tx) ([]row, error) {
	rs, err := tx.Query(ctx, r.selectSQL, r.batch)
	if err != nil {
		return nil, fmt.Errorf("outbox %s: lock batch: %w", r.schema, err)
	}
	var out []row
	var m row
	_, err = pgx.ForEachRow(rs, []any{&m.seq, &m.id, &m.subject, &m.payload}, func() error {
		out = append(out, m)
		// Scanning into the same byte slice would overwrite it next row.
		m.payload = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox %s: read batch: %w", r.schema, err)
	}
	return out, nil
}

// signal wakes Run without blocking; one pending wake-up is enough because a
// pass takes everything committed so far.
func (r *Relay) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// listen holds a dedicated connection LISTENing on Channel and wakes Run on
// every notification for this schema. The connection is outside the pool so
// it never starves request handling; when it drops, the poll covers the gap
// and listen reconnects with a capped backoff.
func (r *Relay) listen(ctx context.Context) {
	backoff := minBackoff
	failures := 0
	for {
		err := r.listenOnce(ctx, func() {
			if failures > 0 {
				r.logger.Info("outbox relay listening again", "failed_attempts", failures)
			}
			failures, backoff = 0, minBackoff
		})
		if ctx.Err() != nil {
			return
		}
		failures++
		if failures == 1 {
			r.logger.Warn("outbox relay lost its notification connection, polling until it is back", "err", err)
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		backoff = min(2*backoff, r.maxBackoff)
	}
}

func (r *Relay) listenOnce(ctx context.Context, listening func()) error {
	conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen %s: %w", Channel, err)
	}
	listening()
	// Events may have been committed while nobody was listening.
	r.signal()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		if n.Payload == r.schema {
			r.signal()
		}
	}
}

// register exports the counters as Prometheus metrics read from the relay
// at scrape time, so the publish path pays nothing for them.
func (r *Relay) register() {
	labels := prometheus.Labels{"schema": r.schema}
	collectors := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "manushya_outbox_published_total",
			Help:        "Events published from the outbox and acknowledged by the stream.",
			ConstLabels: labels,
		}, func() float64 { return float64(r.published.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "manushya_outbox_publish_failures_total",
			Help:        "Outbox relay passes that failed and were retried.",
			ConstLabels: labels,
		}, func() float64 { return float64(r.failures.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "manushya_outbox_backlog",
			Help:        "Events waiting in the outbox (-1 when the count fails).",
			ConstLabels: labels,
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := r.Backlog(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}),
	}
	for _, c := range collectors {
		if err := r.registerer.Register(c); err != nil {
			// A second relay on the same schema in one process: the first one's
			// metrics stand for both.
			r.logger.Warn("outbox relay metrics not registered", "err", err)
		}
	}
}
