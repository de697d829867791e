package webhooks

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"

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
	"github.com/manushya-ai/manushya/services/webhooks/store"
)

// Schema is the service's PostgreSQL schema.
const Schema = store.Schema

// DefaultRetrySchedule is the wait before each attempt: the first at once, then
// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (jittered by ±10%).
func DefaultRetrySchedule() []time.Duration {
	return []time.Duration{
		0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
		2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
	}
}

// Config is the webhooks service's own configuration. Zero values take the defaults.
type Config struct {
	// SecretKey, base64 of 32 bytes, is the key signing secrets and custom headers
	// were sealed under before the keyring (webhooks.secret_key); it only opens those
	// older values now, until the re-encryption job has re-sealed them.
	SecretKey string
	// AllowedAddresses are CIDRs or IPs deliveries may reach although they are
	// private or loopback (e.g. "127.0.0.0/8" for `manushya dev` and tests).
	AllowedAddresses []string
	// RetrySchedule is the wait before each attempt; its length is the number of
	// attempts.
	RetrySchedule []time.Duration
	// Timeout bounds one attempt, connection to last response byte (15 s).
	Timeout time.Duration
	// DisableAfter disables an endpoint that has kept failing this long (5 days).
	DisableAfter time.Duration
	// EndpointConcurrency is the most attempts in flight per endpoint (32).
	EndpointConcurrency int
	// GlobalConcurrency is the most attempts in flight overall (256).
	GlobalConcurrency int
	// PollInterval is how often the scheduler looks for due retries (1 s).
	PollInterval time.Duration
	// BodyExcerptBytes is how much of request and response bodies the log keeps (4 KiB).
	BodyExcerptBytes int
	// ResponseReadBytes is the most of a response body read (64 KiB).
	ResponseReadBytes int
	// EventRetention drops event partitions older than this (30 days).
	EventRetention time.Duration
	// AttemptRetention drops attempt partitions older than this (30 days).
	AttemptRetention time.Duration
	// ConsumerWorkers is how many bus messages each consumer handles at once (16).
	ConsumerWorkers int
	// Now is the clock, for tests.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if len(c.RetrySchedule) == 0 {
		c.RetrySchedule = DefaultRetrySchedule()
	}
	set := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	set(&c.Timeout, 15*time.Second)
	set(&c.DisableAfter, 5*24*time.Hour)
	set(&c.PollInterval, time.Second)
	set(&c.EventRetention, 30*24*time.Hour)
	set(&c.AttemptRetention, 30*24*time.Hour)
	seti := func(p *int, n int) {
		if *p <= 0 {
			*p = n
		}
	}
	seti(&c.EndpointConcurrency, 32)
	seti(&c.GlobalConcurrency, 256)
	seti(&c.BodyExcerptBytes, 4<<10)
	seti(&c.ResponseReadBytes, 64<<10)
	seti(&c.ConsumerWorkers, 16)
	if c.Now == nil {
		c.Now = func() time.Time { return time.Now().UTC() }
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
	// Dial returns a client connection to another service by name ("identity",
	// "embedding", ...): in-process or remote, the same gRPC path.
	Dial func(service string) (grpc.ClientConnInterface, error)
	// Keyring seals signing secrets and custom headers under the tenant's data key
	// (envelope encryption, pkg/keyring). Required: secrets are never stored plain.
	Keyring Sealer
}

// Module is the webhooks service as a unit of the binary.
type Module struct {
	svc     *Service
	bus     *bus.Bus
	relay   *outbox.Relay
	workers *worker.Group
}

// Migrations returns the webhooks schema's migration set.
func Migrations() postgres.Migrations { return migrations.Set }

// New builds the module; nothing runs until Start.
func New(cfg Config, deps Deps) (*Module, error) {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	cfg = cfg.withDefaults()
	logger := deps.Logger.With("service", "webhooks")
	sealer := deps.Keyring
	if sealer == nil {
		return nil, errors.New("webhooks: a keyring is required (secrets are always sealed)")
	}
	var legacyKey []byte
	if cfg.SecretKey != "" {
		key, err := base64.StdEncoding.DecodeString(cfg.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("webhooks.secret_key: not base64: %w", err)
		}
		legacyKey = key
	}
	if err := registerFields(sealer, legacyKey); err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	allow, err := parseAllowlist(cfg.AllowedAddresses)
	if err != nil {
		return nil, err
	}
	svc := &Service{
		cfg: cfg, store: store.New(deps.Pool), sealer: sealer, logger: logger, now: cfg.Now,
		parts: map[string]bool{}, policy: addressPolicy{allow: allow}, bus: deps.Bus,
	}
	svc.deliverer = newDeliverer(svc, svc.policy)
	if svc.deliverer.metrics, err = newDeliveryMetrics(deps.Registerer); err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	m := &Module{svc: svc, bus: deps.Bus, workers: worker.NewGroup(logger)}
	if deps.Bus != nil {
		m.relay = outbox.NewRelay(deps.Pool, deps.Bus.JS, Schema, logger, outbox.WithRegisterer(deps.Registerer))
	}
	return m, nil
}

// Register adds the service's gRPC services to s.
func (m *Module) Register(s grpc.ServiceRegistrar) {
	webhooksv1.RegisterWebhookServiceServer(s, &webhookServer{svc: m.svc})
	eventsv1.RegisterEventServiceServer(s, &eventServer{svc: m.svc})
	eventsv1.RegisterAuditServiceServer(s, &auditServer{svc: m.svc})
}

// Service exposes the domain logic (tests, benchmarks).
func (m *Module) Service() *Service { return m.svc }

// Start launches the outbox relay, the event store, audit writer, audit record
// writer, dispatcher and erasure (erasure.go) consumers, the delivery scheduler
// and the retention loop.
func (m *Module) Start(ctx context.Context) error {
	s := m.svc
	if s.store.Pool() == nil {
		return errors.New("webhooks: a database pool is required")
	}
	if m.relay != nil {
		m.workers.Go(ctx, "webhooks outbox relay", m.relay.Run)
	}
	if m.bus != nil {
		m.workers.Go(ctx, "event store consumer", func(ctx context.Context) error {
			return consume(ctx, m.bus, ConsumerEventStore, s.cfg.ConsumerWorkers, s.logger, s.recordEvents)
		})
		m.workers.Go(ctx, "audit writer", func(ctx context.Context) error {
			return consume(ctx, m.bus, ConsumerAudit, s.cfg.ConsumerWorkers, s.logger, s.auditEvents)
		})
		// Requests, sign-ins and authorization decisions of every process, from the
		// audit stream (pkg/audit).
		m.workers.Go(ctx, "audit record writer", func(ctx context.Context) error {
			return s.consumeAuditRecords(ctx, m.bus, s.cfg.ConsumerWorkers)
		})
		m.workers.Go(ctx, "webhook dispatcher", func(ctx context.Context) error {
			return consume(ctx, m.bus, ConsumerDispatcher, s.cfg.ConsumerWorkers, s.logger, s.dispatchEvents)
		})
		m.workers.Go(ctx, "webhooks erasure", func(ctx context.Context) error { return s.consumeErasures(ctx, m.bus) })
	}
	m.workers.Go(ctx, "webhook delivery scheduler", s.deliverer.run)
	m.workers.Go(ctx, "webhooks retention", s.retentionLoop)
	return nil
}

// Stop ends the background loops.
func (m *Module) Stop(ctx context.Context) error { return m.workers.Stop(ctx) }
