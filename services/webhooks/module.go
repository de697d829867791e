package webhooks

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/kv"
	"github.com/manushya-ai/manushya/pkg/outbox"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/worker"
	"github.com/manushya-ai/manushya/services/webhooks/migrations"
)

// Schema is the service's PostgreSQL schema.
const Schema = "webhooks"

// Config is the webhooks service's own configuration.
type Config struct{}

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

// Module is the webhooks service as a unit of the binary.
type Module struct {
	relay   *outbox.Relay
	workers *worker.Group
}

// Migrations returns the webhooks schema's migration set.
func Migrations() postgres.Migrations { return migrations.Set }

// New builds the module; nothing runs until Start.
func New(_ Config, deps Deps) (*Module, error) {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	logger := deps.Logger.With("service", "webhooks")
	m := &Module{workers: worker.NewGroup(logger)}
	if deps.Bus != nil && deps.Pool != nil {
		m.relay = outbox.NewRelay(deps.Pool, deps.Bus.JS, Schema, logger, outbox.WithRegisterer(deps.Registerer))
	}
	return m, nil
}

// Register adds the service's gRPC services to s.
func (m *Module) Register(s grpc.ServiceRegistrar) {
	webhooksv1.RegisterWebhookServiceServer(s, webhooksv1.UnimplementedWebhookServiceServer{})
	eventsv1.RegisterEventServiceServer(s, eventsv1.UnimplementedEventServiceServer{})
	eventsv1.RegisterAuditServiceServer(s, eventsv1.UnimplementedAuditServiceServer{})
}

// Start launches the outbox relay.
func (m *Module) Start(ctx context.Context) error {
	if m.relay != nil {
		m.workers.Go(ctx, "webhooks outbox relay", m.relay.Run)
	}
	return nil
}

// Stop ends the background loops.
func (m *Module) Stop(ctx context.Context) error { return m.workers.Stop(ctx) }
