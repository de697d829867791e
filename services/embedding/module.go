package embedding

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/embedder"
	"github.com/manushya-ai/manushya/pkg/kv"
	"github.com/manushya-ai/manushya/pkg/outbox"
	embeddingv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/worker"
	"github.com/manushya-ai/manushya/services/embedding/migrations"
)

// Schema is the service's PostgreSQL schema.
const Schema = "embedding"

// Deps are what the composition root hands the module.
type Deps struct {
	Logger     *slog.Logger
	Pool       *pgxpool.Pool // connected as the application role
	Bus        *bus.Bus      // NATS JetStream: outbox relay and consumers
	KV         kv.Store      // Redis, or in-process in dev: the vector cache
	Registerer prometheus.Registerer
	// Dial returns a client connection to another service by name ("identity",
	// "embedding", ...): in-process or remote, the same gRPC path.
	Dial func(service string) (grpc.ClientConnInterface, error)
}

// Module is the embedding service as a unit of the binary.
type Module struct {
	svc     *Service
	relay   *outbox.Relay
	workers *worker.Group
}

// Migrations returns the embedding schema's migration set.
func Migrations() postgres.Migrations { return migrations.Set }

// New builds the module: it loads local models and checks every provider's
// settings, so a bad configuration fails at startup. Nothing runs until Start.
func New(cfg Config, deps Deps) (*Module, error) {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	logger := deps.Logger.With("service", "embedding")
	cfg.withDefaults()
	specs, err := buildProviders(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedding: %w", err)
	}
	opts := embedder.Options{Providers: specs, Registerer: deps.Registerer, Logger: logger}
	if deps.KV != nil && cfg.CacheTTL > 0 {
		opts.Cache = embedder.NewCache(deps.KV, cfg.CacheTTL)
	}
	router, err := embedder.NewRouter(opts)
	if err != nil {
		return nil, fmt.Errorf("embedding: %w", err)
	}
	m := &Module{svc: &Service{router: router, cfg: cfg}, workers: worker.NewGroup(logger)}
	if deps.Pool != nil {
		m.svc.usage = newUsageMeter(deps.Pool, logger, cfg.UsageFlushInterval)
	}
	if deps.Bus != nil && deps.Pool != nil {
		m.relay = outbox.NewRelay(deps.Pool, deps.Bus.JS, Schema, logger, outbox.WithRegisterer(deps.Registerer))
	}
	for _, p := range router.Providers() {
		logger.Info("embedding provider ready", "provider", p.Name, "kind", p.Kind, "model", p.Model.Name, "dimensions", p.Model.Dimensions)
	}
	return m, nil
}

// Register adds the service's gRPC services to s.
func (m *Module) Register(s grpc.ServiceRegistrar) {
	embeddingv1.RegisterEmbeddingServiceServer(s, &server{svc: m.svc})
}

// Service exposes the domain logic, for in-process callers and tests.
func (m *Module) Service() *Service { return m.svc }

// Start launches the usage meter and the outbox relay.
func (m *Module) Start(ctx context.Context) error {
	if m.svc.usage != nil {
		m.workers.Go(ctx, "embedding usage meter", m.svc.usage.run)
	}
	if m.relay != nil {
		m.workers.Go(ctx, "embedding outbox relay", m.relay.Run)
	}
	return nil
}

// Stop ends the background loops; the usage meter writes its last sums first.
func (m *Module) Stop(ctx context.Context) error { return m.workers.Stop(ctx) }
