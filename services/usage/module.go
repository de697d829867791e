package usage

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/kv"
	"github.com/manushya-ai/manushya/pkg/outbox"
	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/ratelimit"
	"github.com/manushya-ai/manushya/pkg/worker"
	"github.com/manushya-ai/manushya/services/usage/migrations"
	"github.com/manushya-ai/manushya/services/usage/store"
)

// Schema is the service's PostgreSQL schema.
const Schema = store.Schema

// Config is the usage service's own configuration.
type Config struct {
	// Types registers usage types beyond the built-in ones, so events of them are
	// accepted.
	Types []string
	// Retention is how long raw events are kept; whole monthly partitions older
	// than it are dropped. Default 13 months; rollups are kept.
	Retention time.Duration
	// MinuteRetention is how long per-minute rollups are kept; default 7 days.
	MinuteRetention time.Duration
	// ConsumerBatch is how many bus events one transaction meters; default 5000.
	ConsumerBatch int
	// ConsumerWorkers is how many batches are metered at once; default 2.
	ConsumerWorkers int
	// SummaryCacheTTL is how long a usage summary is served from memory; default
	// 10s, negative disables the cache.
	SummaryCacheTTL time.Duration
	// DisableConsumer leaves metering from the bus to other processes.
	DisableConsumer bool
}

// Deps are what the composition root hands the module.
type Deps struct {
	Logger     *slog.Logger
	Pool       *pgxpool.Pool // connected as the application role
	Bus        *bus.Bus      // NATS JetStream: outbox relay and consumers
	KV         kv.Store      // Redis, or in-process in dev
	Registerer prometheus.Registerer
	// Dial returns a client connection to another service by name ("identity",
	// "embedding", ...): in-process or remote, the same gRPC path.
	Dial func(service string) (grpc.ClientConnInterface, error)
	// Limiter is the process's rate limiter (the one in the interceptor chain), so
	// counter state and resets act on the counters that limit requests. Nil: the
	// module builds one over KV's Redis (shared counters; in-process counters would
	// be this module's own).
	Limiter *ratelimit.Limiter
}

// Module is the usage service as a unit of the binary.
type Module struct {
	svc      *Service
	relay    *outbox.Relay
	consumer *consumer
	monitor  *monitor
	cfg      Config
	logger   *slog.Logger
	workers  *worker.Group
}

// Migrations returns the usage schema's migration set.
func Migrations() postgres.Migrations { return migrations.Set }

// New builds the module; nothing runs until Start.
func New(cfg Config, deps Deps) (*Module, error) {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 396 * 24 * time.Hour
	}
	if cfg.Retention < LateWindow {
		return nil, fmt.Errorf("usage: retention %s is shorter than the late window %s", cfg.Retention, LateWindow)
	}
	if cfg.MinuteRetention <= 0 {
		cfg.MinuteRetention = 7 * 24 * time.Hour
	}
	if cfg.ConsumerWorkers <= 0 {
		cfg.ConsumerWorkers = 2
	}
	if cfg.ConsumerBatch <= 0 {
		cfg.ConsumerBatch = 5000
	}
	logger := deps.Logger.With("service", "usage")
	st := store.New(deps.Pool)
	types := make(map[string]bool, len(builtinTypes)+len(cfg.Types))
	for _, t := range append(append([]string{}, builtinTypes...), cfg.Types...) {
		if !typePattern.MatchString(t) {
			return nil, fmt.Errorf("usage: usage type %q: want lowercase dotted words", t)
		}
		types[t] = true
	}
	lim := deps.Limiter
	if lim == nil {
		opts := ratelimit.Options{Source: NewLimitSource(deps.Pool), Logger: logger}
		if deps.KV != nil {
			if rc, ok := kv.RedisClient(deps.KV); ok {
				opts.Redis = rc
			}
		}
		var err error
		if lim, err = ratelimit.New(opts); err != nil {
			return nil, err
		}
	}
	svc := &Service{store: st, limiter: lim, logger: logger, types: types, now: time.Now}
	svc.quotas = NewQuotaChecker(deps.Pool, logger, 10*time.Second)
	if cfg.SummaryCacheTTL == 0 {
		cfg.SummaryCacheTTL = 10 * time.Second
	}
	svc.summaries = newSummaryCache(max(cfg.SummaryCacheTTL, 0))
	m := &Module{svc: svc, cfg: cfg, logger: logger, workers: worker.NewGroup(logger)}
	m.monitor = newMonitor(deps, logger)
	if deps.Bus != nil && deps.Pool != nil {
		m.relay = outbox.NewRelay(deps.Pool, deps.Bus.JS, Schema, logger, outbox.WithRegisterer(deps.Registerer))
		if !cfg.DisableConsumer {
			m.consumer = &consumer{svc: svc, bus: deps.Bus, logger: logger, batch: cfg.ConsumerBatch,
				events: prometheus.NewCounter(prometheus.CounterOpts{
					Name: "manushya_usage_events_metered_total",
					Help: "Domain events turned into usage events by the usage consumer.",
				})}
			if deps.Registerer != nil {
				_ = deps.Registerer.Register(m.consumer.events)
			}
		}
		if deps.Registerer != nil {
			// Already registered means another usage module in this process exports it.
			_ = deps.Registerer.Register(newLagCollector(deps.Bus))
		}
	}
	if deps.Pool != nil && deps.Registerer != nil {
		// Already registered means another usage module in this process exports it.
		_ = deps.Registerer.Register(newQueueCollector(m.monitor))
	}
	return m, nil
}

// Register adds the service's gRPC services to s.
func (m *Module) Register(s grpc.ServiceRegistrar) {
	usagev1.RegisterUsageServiceServer(s, &usageServer{svc: m.svc})
	adminv1.RegisterRateLimitServiceServer(s, &rateLimitServer{svc: m.svc})
	adminv1.RegisterMonitoringServiceServer(s, &monitoringServer{mon: m.monitor})
}

// LimitSource returns the stored rate limits as a ratelimit.LimitSource.
func (m *Module) LimitSource() ratelimit.LimitSource { return &LimitSource{store: m.svc.store} }

// Service exposes the domain logic (tests, the composition root).
func (m *Module) Service() *Service { return m.svc }

// Quotas returns the quota checker (grpcserver.RateLimiter-shaped).
func (m *Module) Quotas() *QuotaChecker { return m.svc.quotas }

// Start launches the outbox relay, the metering consumer, the erasure consumer
// (erasure.go) and partition upkeep.
func (m *Module) Start(ctx context.Context) error {
	if m.relay != nil {
		m.workers.Go(ctx, "usage outbox relay", m.relay.Run)
	}
	if m.consumer != nil {
		// Two pullers share the durable consumer: one stores a batch while the other
		// fetches and decodes the next.
		for range m.cfg.ConsumerWorkers {
			m.workers.Go(ctx, "usage consumer", m.consumer.run)
		}
		m.workers.Go(ctx, "usage erasure", func(ctx context.Context) error { return m.svc.consumeErasures(ctx, m.consumer.bus) })
	}
	m.workers.Go(ctx, "usage partitions", m.maintain)
	m.workers.Go(ctx, "monitoring sampler", m.monitor.sample)
	return nil
}

// Stop ends the background loops.
func (m *Module) Stop(ctx context.Context) error { return m.workers.Stop(ctx) }

// maintain creates raw-event partitions ahead, drops those past retention and
// prunes expired dedup keys and minute rollups, at start and then every hour.
func (m *Module) maintain(ctx context.Context) error {
	for {
		now := m.svc.now()
		if n, err := m.svc.store.EnsurePartitions(ctx, now.AddDate(0, -2, 0), 6); err != nil {
			m.logger.WarnContext(ctx, "usage partitions not created", "err", err)
		} else if n > 0 {
			m.logger.InfoContext(ctx, "usage partitions created", "count", n)
		}
		if dropped, err := m.svc.store.DropPartitionsBefore(ctx, now.Add(-m.cfg.Retention)); err != nil {
			m.logger.WarnContext(ctx, "usage partitions not dropped", "err", err)
		} else if len(dropped) > 0 {
			m.logger.InfoContext(ctx, "usage partitions dropped", "partitions", dropped)
		}
		// Keys outlive the late window by a margin; minute rollups serve recent
		// views only, the daily ones keep the history.
		if n, err := m.svc.store.Prune(ctx, now.Add(-LateWindow-48*time.Hour), now.Add(-m.cfg.MinuteRetention)); err != nil {
			m.logger.WarnContext(ctx, "usage prune failed", "err", err)
		} else if n > 0 {
			m.logger.InfoContext(ctx, "usage keys and minute rollups pruned", "rows", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Hour):
		}
	}
}
