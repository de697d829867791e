package memory

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/kv"
	"github.com/manushya-ai/manushya/pkg/metering"
	"github.com/manushya-ai/manushya/pkg/outbox"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/worker"
	"github.com/manushya-ai/manushya/services/memory/migrations"
	"github.com/manushya-ai/manushya/services/memory/store"
)

// Schema is the service's PostgreSQL schema.
const Schema = store.Schema

// Config is the memory service's own configuration. Zero fields take defaults.
//
// The process configuration's memory section (pkg/config MemoryConfig, keys
// memory.*) sets these; its defaults are the ones below, and its validation holds
// each value to what the service tolerates.
type Config struct {
	// EmbeddingModel is the model asked of the embedding service; empty lets the
	// embedding service pick its default. Vectors must have 384 dimensions.
	EmbeddingModel string
	// MaxTextBytes bounds a memory's text (default 100000).
	MaxTextBytes int
	// WaitLimit bounds create/update with wait=true (default 5s).
	WaitLimit time.Duration
	// EmbedBatchSize is the most texts per Embed call (default 64).
	EmbedBatchSize int
	// EmbedConcurrency is how many batches the embedder embeds and stores at
	// once (default 4).
	EmbedConcurrency int
	// SweepInterval is how often the embedding, TTL, restore-window and
	// encryption sweepers look for due work (default 5s).
	SweepInterval time.Duration
	// IndexInterval is how often the indexer looks for fresh vectors (stored,
	// searchable by exact scan, not yet in the HNSW graph) and drains them into
	// the graph (default 1s).
	IndexInterval time.Duration
	// EfSearch is hnsw.ef_search for vector searches (default 250). Measured
	// tenant-wide recall@10 at 100k memories plus 100k of nine other tenants,
	// hashing embeddings, m=16, ef_construction=64, with the tenant-fenced
	// index of migration 00006: 0.92 at 100, 0.94 at 150, 0.96 at 200, 0.97 at
	// 300, 0.98 at 400 (the unfenced index of 00004 needed 400 for 0.96). The
	// issue's floor is 0.95; the cost of a scan grows about linearly with it.
	// A tenant of 1M memories (plus 1M of others) needs more: 0.90 at 250,
	// 0.93 at 400, 0.95 at 600, 0.96 at 800 (docs/benchmarks.md, round 6).
	EfSearch int
	// ExactScanRows: a vector search whose scope holds at most this many
	// embedded rows (a filter, an identity, or a whole tenant that small) is
	// answered by an exact scan instead of the HNSW index (default 10000). An
	// exact scan costs about 2 µs a row here, so up to a few thousand rows it is
	// also the cheaper path; above, it buys completeness for small scopes,
	// whose rows a filtered graph walk may never reach.
	ExactScanRows int
	// DisableWorkers leaves out the embedder consumer and the sweepers (for a
	// process that serves the API only).
	DisableWorkers bool
	// UsageFlushInterval is how often the module's own search meter publishes
	// its sums (default 1s); unused when Deps.Meter is given, as the manushya
	// binary does (so it has no configuration key).
	UsageFlushInterval time.Duration
	// ConversionSettle is how long after a change of encrypt_text the encryption
	// sweeper keeps looking for rows to move, for writes that were in flight
	// when the setting changed and used the old form (default 1 minute).
	ConversionSettle time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxTextBytes <= 0 {
		c.MaxTextBytes = 100000
	}
	if c.WaitLimit <= 0 {
		c.WaitLimit = 5 * time.Second
	}
	if c.EmbedBatchSize <= 0 {
		c.EmbedBatchSize = 64
	}
	if c.EmbedConcurrency <= 0 {
		c.EmbedConcurrency = 4
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 5 * time.Second
	}
	if c.IndexInterval <= 0 {
		c.IndexInterval = time.Second
	}
	if c.EfSearch <= 0 {
		c.EfSearch = 250
	}
	if c.ExactScanRows <= 0 {
		c.ExactScanRows = 10000
	}
	if c.UsageFlushInterval <= 0 {
		c.UsageFlushInterval = time.Second
	}
	if c.ConversionSettle <= 0 {
		c.ConversionSettle = time.Minute
	}
	return c
}

// Deps are what the composition root hands the module.
type Deps struct {
	Logger     *slog.Logger
	Pool       *pgxpool.Pool // connected as the application role
	Bus        *bus.Bus      // NATS JetStream: outbox relay and consumers
	KV         kv.Store      // Redis, or in-process in dev
	Registerer prometheus.Registerer
	// Meter sums searches as memory.search usage and publishes them (the
	// process's shared meter, started and closed by its owner). Without one, a
	// module with a bus meters through a meter of its own.
	Meter *metering.Meter
	// Dial returns a client connection to another service by name ("identity",
	// "embedding", ...): in-process or remote, the same gRPC path.
	Dial func(service string) (grpc.ClientConnInterface, error)
	// Keyring seals the memory text of tenants with encrypt_text under their
	// identities' data keys (pkg/keyring). Without one, no tenant can turn
	// encryption on.
	Keyring keyring.Sealer
}

// Module is the memory service as a unit of the binary.
type Module struct {
	svc      *Service
	relay    *outbox.Relay
	embedder *embedWorker
	bus      *bus.Bus
	cfg      Config
	workers  *worker.Group
	ownMeter bool // svc.usage is the module's: it starts and closes it
}

// Migrations returns the memory schema's migration set.
func Migrations() postgres.Migrations { return migrations.Set }

// New builds the module; nothing runs until Start.
func New(cfg Config, deps Deps) (*Module, error) {
	cfg = cfg.withDefaults()
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	logger := deps.Logger.With("service", "memory")
	svc := &Service{cfg: cfg, store: store.New(deps.Pool), logger: logger, dial: deps.Dial, metrics: newMetrics(deps.Registerer)}
	if deps.Keyring != nil {
		if err := registerFields(deps.Keyring); err != nil {
			return nil, err
		}
		svc.keys = deps.Keyring
	}
	m := &Module{svc: svc, cfg: cfg, bus: deps.Bus, workers: worker.NewGroup(logger)}
	svc.usage = deps.Meter
	if svc.usage == nil && deps.Bus != nil {
		svc.usage = metering.New(metering.Options{Interval: cfg.UsageFlushInterval, Logger: logger, Registerer: deps.Registerer})
		m.ownMeter = true
	}
	m.embedder = &embedWorker{svc: svc, logger: logger}
	if deps.Bus != nil && !cfg.DisableWorkers {
		svc.grace = 30
	}
	if deps.Bus != nil && deps.Pool != nil {
		m.relay = outbox.NewRelay(deps.Pool, deps.Bus.JS, Schema, logger, outbox.WithRegisterer(deps.Registerer))
	}
	return m, nil
}

// Service exposes the domain logic (benchmarks, the composition root).
func (m *Module) Service() *Service { return m.svc }

// Register adds the service's gRPC services to s.
func (m *Module) Register(s grpc.ServiceRegistrar) {
	memoryv1.RegisterMemoryServiceServer(s, &server{svc: m.svc})
}

// Start launches the outbox relay, the module's own search meter if it has one,
// the embedder (a durable JetStream consumer of memory.created and
// memory.updated), the erasure consumer (identity.erased, tenant.erased: erasure.go)
// the indexer (fresh vectors into the HNSW graph: indexer.go) and the
// sweepers: embedding, TTL, restore window, encryption.
func (m *Module) Start(ctx context.Context) error {
	if m.relay != nil {
		m.workers.Go(ctx, "memory outbox relay", m.relay.Run)
	}
	// Searches are metered by every process that serves them, workers or not.
	if m.ownMeter {
		m.svc.usage.Start(m.bus.JS)
	}
	if m.cfg.DisableWorkers {
		return nil
	}
	if m.bus != nil {
		m.workers.Go(ctx, "memory embedder", func(ctx context.Context) error { return m.embedder.consume(ctx, m.bus) })
		m.workers.Go(ctx, "memory erasure", func(ctx context.Context) error { return m.svc.consumeErasures(ctx, m.bus) })
		m.workers.Go(ctx, "memory purge", func(ctx context.Context) error { return m.svc.consumePurges(ctx, m.bus) })
	}
	m.workers.Go(ctx, "memory embedding sweeper", func(ctx context.Context) error {
		return every(ctx, m.cfg.SweepInterval, m.embedder.sweep)
	})
	m.workers.Go(ctx, "memory indexer", func(ctx context.Context) error {
		return every(ctx, m.cfg.IndexInterval, m.svc.indexFresh)
	})
	m.workers.Go(ctx, "memory ttl sweeper", func(ctx context.Context) error {
		return every(ctx, m.cfg.SweepInterval, m.svc.purgeExpired)
	})
	m.workers.Go(ctx, "memory restore-window sweeper", func(ctx context.Context) error {
		return every(ctx, m.cfg.SweepInterval, m.svc.purgeDeleted)
	})
	m.workers.Go(ctx, "memory encryption sweeper", func(ctx context.Context) error {
		return every(ctx, m.cfg.SweepInterval, m.svc.convertTexts)
	})
	return nil
}

// Stop ends the background loops, then publishes the searches the module's own
// meter still holds.
func (m *Module) Stop(ctx context.Context) error {
	err := m.workers.Stop(ctx)
	if m.ownMeter {
		if cerr := m.svc.usage.Close(ctx, m.bus.JS); cerr != nil {
			m.svc.logger.ErrorContext(ctx, "memory search usage not published", "err", cerr)
		}
	}
	return err
}

// every runs fn at each tick until ctx ends; errors are logged by fn's owner and
// never stop the loop. The first pass comes one interval after the start, not
// at it: a restarted process waits at most an interval for its background work,
// and a test that drives the passes by hand (with intervals of an hour) has
// them to itself; a pass at the start raced its first writes.
func every(ctx context.Context, d time.Duration, fn func(context.Context) error) error {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		_ = fn(ctx)
	}
}
