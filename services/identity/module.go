package identity

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	envelope "github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/kv"
	"github.com/manushya-ai/manushya/pkg/outbox"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/worker"
	"github.com/manushya-ai/manushya/services/identity/migrations"
	"github.com/manushya-ai/manushya/services/identity/store"
)

// Config is the identity service's own configuration.
type Config struct {
	// APIKeyPepper keys the HMAC under which API keys are stored (at least 32 bytes).
	APIKeyPepper string
	// KeyEnvironment is the <env> part of issued keys ("live", "test").
	KeyEnvironment string
	// Tokens configures access and refresh tokens, sessions and sign-in.
	Tokens TokenConfig
	// APIKeyCache, MFA and Invitations: see keys_mfa_setup.go.
	APIKeyCache APIKeyCacheConfig
	MFA         MFAConfig
	Invitations InvitationConfig
	SSO         SSOConfig // sso.go
	// RetentionSweepInterval is how often soft-deleted identities past their
	// tenant's deleted_identity_retention_days are purged (retention.go); 0 means
	// hourly.
	RetentionSweepInterval time.Duration
}

// Deps are what the composition root hands the module.
type Deps struct {
	Logger     *slog.Logger
	Pool       *pgxpool.Pool // connected as the application role
	Bus        *bus.Bus      // NATS JetStream: outbox relay and consumers
	KV         kv.Store      // Redis, or in-process in dev
	Registerer prometheus.Registerer
	// Dial returns a client connection to another service by name.
	Dial func(service string) (grpc.ClientConnInterface, error)
	// Audit receives authentication events (sign-ins, token refreshes); nil
	// records none.
	Audit audit.Sink
	// Keyring seals the service's secrets (envelope encryption, pkg/keyring). Nil
	// seals with the older secretbox keys (tests, tools).
	Keyring envelope.Sealer
}

// Module is the identity service as a unit of the binary: its gRPC services and its
// background workers (the outbox relay).
type Module struct {
	svc     *Service
	relay   *outbox.Relay
	bus     *bus.Bus
	logger  *slog.Logger
	workers *worker.Group
	// retentionEvery is the retention sweeper's interval (retention.go).
	retentionEvery time.Duration
}

// Migrations returns the identity schema's migration set.
func Migrations() postgres.Migrations { return migrations.Set }

// New builds the module; nothing runs until Start.
func New(cfg Config, deps Deps) (*Module, error) {
	if len(cfg.APIKeyPepper) < 32 {
		return nil, errors.New("identity: auth.api_key_pepper must be at least 32 bytes")
	}
	if cfg.KeyEnvironment == "" {
		cfg.KeyEnvironment = "live"
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	logger := deps.Logger.With("service", "identity")
	m := &Module{
		svc: &Service{
			store: store.New(deps.Pool), pepper: []byte(cfg.APIKeyPepper),
			keyEnv: cfg.KeyEnvironment, logger: logger,
		},
		logger:         logger,
		workers:        worker.NewGroup(logger),
		retentionEvery: cfg.RetentionSweepInterval,
	}
	if m.retentionEvery <= 0 {
		m.retentionEvery = defaultRetentionSweepInterval
	}
	m.svc.audit = deps.Audit
	sealer, err := newSealer(cfg, deps.Keyring)
	if err != nil {
		return nil, err
	}
	m.svc.sealer = sealer
	if err := m.svc.initTokens(cfg.Tokens, cfg.APIKeyPepper, deps); err != nil {
		return nil, err
	}
	if err := m.svc.initKeysMFAInvites(cfg, deps); err != nil {
		return nil, err
	}
	if err := m.svc.initSSO(cfg.SSO); err != nil {
		return nil, err
	}
	m.svc.initExport(deps)
	if err := m.svc.registerSensitiveClaims(); err != nil {
		return nil, err
	}
	if deps.Bus != nil {
		m.relay = outbox.NewRelay(deps.Pool, deps.Bus.JS, store.Schema, logger, outbox.WithRegisterer(deps.Registerer))
		m.bus = deps.Bus
	}
	return m, nil
}

// Register adds the identity service's gRPC services to s.
func (m *Module) Register(s grpc.ServiceRegistrar) {
	identityv1.RegisterTenantServiceServer(s, &tenantServer{svc: m.svc})
	identityv1.RegisterIdentityServiceServer(s, &identityServer{svc: m.svc})
	identityv1.RegisterCredentialServiceServer(s, credentialServer{})
	identityv1.RegisterAuthServiceServer(s, &authServer{svc: m.svc})
	identityv1.RegisterSessionServiceServer(s, &sessionServer{svc: m.svc})
	identityv1.RegisterApiKeyServiceServer(s, &apiKeyServer{svc: m.svc})
	identityv1.RegisterInvitationServiceServer(s, &invitationServer{svc: m.svc})
	registerSSO(s, m.svc)
	identityv1.RegisterExportServiceServer(s, &exportServer{svc: m.svc})
	identityv1.RegisterErasureServiceServer(s, &erasureServer{svc: m.svc})
}

// Authenticator verifies the credentials this service issues.
func (m *Module) Authenticator() auth.Authenticator { return m.svc }

// Service exposes the domain logic to the composition root (bootstrap).
func (m *Module) Service() *Service { return m.svc }

// Start launches the outbox relay and the consumer that adds the services'
// erasure reports to the receipts.
func (m *Module) Start(ctx context.Context) error {
	if m.relay != nil {
		m.workers.Go(ctx, "identity outbox relay", m.relay.Run)
		m.workers.Go(ctx, "identity erasure receipts", func(ctx context.Context) error { return m.svc.consumeErasureProgress(ctx, m.bus) })
	}
	m.workers.Go(ctx, "identity retention sweeper", func(ctx context.Context) error {
		return m.svc.runRetention(ctx, m.retentionEvery)
	})
	if err := m.svc.startKeyCache(ctx, m.workers); err != nil {
		return err
	}
	return m.svc.startTokens(ctx, m.workers)
}

// Stop ends the relay, waiting for its current batch.
func (m *Module) Stop(ctx context.Context) error { return m.workers.Stop(ctx) }
