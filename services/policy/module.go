package policy

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
	policyv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
	"github.com/manushya-ai/manushya/pkg/policyengine"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/worker"
	"github.com/manushya-ai/manushya/services/policy/migrations"
	"github.com/manushya-ai/manushya/services/policy/store"
)

// Schema is the service's PostgreSQL schema.
const Schema = store.Schema

// Config is the policy service's own configuration; zero values take the defaults.
type Config struct {
	// MaxSourceBytes is the largest policy source accepted (default 64 KiB).
	MaxSourceBytes int
	// EvalTimeout bounds one decision's evaluation (default 200ms).
	EvalTimeout time.Duration
}

func (c Config) engineOptions(logger *slog.Logger) policyengine.Options {
	return policyengine.Options{MaxSourceBytes: c.MaxSourceBytes, EvalTimeout: c.EvalTimeout, Logger: logger}
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
}

// Module is the policy service as a unit of the binary.
type Module struct {
	svc     *Service
	authz   *policyengine.Authorizer
	bus     *bus.Bus
	relay   *outbox.Relay
	workers *worker.Group
}

// Migrations returns the policy schema's migration set.
func Migrations() postgres.Migrations { return migrations.Set }

// New builds the module; nothing runs until Start.
func New(cfg Config, deps Deps) (*Module, error) {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	logger := deps.Logger.With("service", "policy")
	m := &Module{workers: worker.NewGroup(logger), bus: deps.Bus}
	if deps.Pool != nil {
		st := store.New(deps.Pool)
		m.authz = policyengine.NewAuthorizer(st, policyengine.AuthorizerConfig{
			Options: policyengine.Options{
				MaxSourceBytes: cfg.MaxSourceBytes, EvalTimeout: cfg.EvalTimeout, Logger: logger,
				Metrics: policyengine.NewMetrics(deps.Registerer),
			},
		})
		m.svc = &Service{store: st, authz: m.authz, opts: cfg.engineOptions(logger), log: logger}
	}
	if deps.Bus != nil && deps.Pool != nil {
		m.relay = outbox.NewRelay(deps.Pool, deps.Bus.JS, Schema, logger, outbox.WithRegisterer(deps.Registerer))
	}
	return m, nil
}

// NewAuthorizer returns the policy engine for any process that reaches the
// database: it reads the tenants' policies from the policy schema (read-only) and,
// once subscribed to the bus, reloads a tenant when its policies change. It is
// what the composition root plugs into the gRPC servers as authz.Authorizer.
func NewAuthorizer(pool *pgxpool.Pool, cfg policyengine.AuthorizerConfig) *policyengine.Authorizer {
	return policyengine.NewAuthorizer(store.New(pool), cfg)
}

// NewLoader returns a policyengine.Loader reading the policy schema through pool
// (read-only, tenant-scoped), for engines built by the composition root.
func NewLoader(pool *pgxpool.Pool) policyengine.Loader { return store.New(pool) }

// Authorizer is the module's own engine (nil without a database): the composition
// root may use it for the whole process instead of building another.
func (m *Module) Authorizer() *policyengine.Authorizer { return m.authz }

// Service is the domain logic, for tests and admin commands.
func (m *Module) Service() *Service { return m.svc }

// Register adds the service's gRPC services to s.
func (m *Module) Register(s grpc.ServiceRegistrar) {
	if m.svc == nil {
		policyv1.RegisterPolicyServiceServer(s, policyv1.UnimplementedPolicyServiceServer{})
		return
	}
	policyv1.RegisterPolicyServiceServer(s, &policyServer{svc: m.svc})
}

// Start launches the outbox relay and follows policy changes on the bus.
func (m *Module) Start(ctx context.Context) error {
	if m.authz != nil && m.bus != nil {
		if err := m.authz.Subscribe(m.bus); err != nil {
			return fmt.Errorf("follow policy changes: %w", err)
		}
	}
	if m.relay != nil {
		m.workers.Go(ctx, "policy outbox relay", m.relay.Run)
	}
	return nil
}

// Stop ends the background loops.
func (m *Module) Stop(ctx context.Context) error {
	if m.authz != nil {
		_ = m.authz.Close()
	}
	return m.workers.Stop(ctx)
}
