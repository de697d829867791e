package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/manushya-ai/manushya/gateway"
	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/config"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/kv"
	"github.com/manushya-ai/manushya/pkg/metering"
	"github.com/manushya-ai/manushya/pkg/module"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/policyengine"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/ratelimit"
	"github.com/manushya-ai/manushya/pkg/telemetry"
	"github.com/manushya-ai/manushya/pkg/worker"
	"github.com/manushya-ai/manushya/services/embedding"
	"github.com/manushya-ai/manushya/services/identity"
	"github.com/manushya-ai/manushya/services/memory"
	"github.com/manushya-ai/manushya/services/policy"
	"github.com/manushya-ai/manushya/services/usage"
	"github.com/manushya-ai/manushya/services/webhooks"
)

// Module names. The infrastructure ones are hidden: they run because a target needs
// them.
const (
	modDatabase = "database"
	modBus      = "bus"
	modKV       = "kv"
	modServer   = "server"
	modGateway  = "gateway"
	modLimits   = "limits"
)

// serviceModule is what every service package provides, in the same shape.
type serviceModule interface {
	Register(grpc.ServiceRegistrar)
	Start(context.Context) error
	Stop(context.Context) error
}

// serviceDef declares one service: its schema and how to build it.
type serviceDef struct {
	name       string
	migrations postgres.Migrations
	build      func(a *App) (serviceModule, error)
}

func services() []serviceDef {
	return []serviceDef{
		{config.ServiceIdentity, identity.Migrations(), func(a *App) (serviceModule, error) {
			m, err := identity.New(a.identityConfig(), identity.Deps{
				Logger: a.logger, Pool: a.pool, Bus: a.bus, KV: a.kv, Registerer: a.registry, Dial: a.dialService,
				Audit: a.auditSink, Keyring: a.keys,
			})
			if err == nil {
				a.identity = m
			}
			return m, err
		}},
		{config.ServiceMemory, memory.Migrations(), func(a *App) (serviceModule, error) {
			m := a.cfg.Memory
			return memory.New(memory.Config{
				EmbeddingModel: m.EmbeddingModel, MaxTextBytes: m.MaxTextBytes, WaitLimit: m.WaitLimit,
				EmbedBatchSize: m.EmbedBatchSize, EmbedConcurrency: m.EmbedConcurrency, SweepInterval: m.SweepInterval,
				IndexInterval: m.IndexInterval, EfSearch: m.EfSearch, ExactScanRows: m.ExactScanRows,
				ConversionSettle: m.ConversionSettle,
				// UsageFlushInterval is not set: the module meters searches through the
				// process's meter (Meter below), which flushes on its own interval.
			}, memory.Deps{Logger: a.logger, Pool: a.pool, Bus: a.bus, KV: a.kv, Registerer: a.registry, Dial: a.dialService, Meter: a.meter, Keyring: a.keys})
		}},
		{config.ServiceEmbedding, embedding.Migrations(), func(a *App) (serviceModule, error) {
			providers, err := embedding.ParseProviders(a.cfg.Embedding.Providers)
			if err != nil {
				return nil, fmt.Errorf("embedding.providers: %w", err)
			}
			e := a.cfg.Embedding
			return embedding.New(embedding.Config{
				Providers: providers, Fallback: e.Fallback, CacheTTL: e.CacheTTL, MaxTexts: e.MaxTexts,
				MaxTextChars: e.MaxTextChars, UsageFlushInterval: e.UsageFlushInterval,
			}, embedding.Deps{Logger: a.logger, Pool: a.pool, Bus: a.bus, KV: a.kv, Registerer: a.registry, Dial: a.dialService})
		}},
		{config.ServicePolicy, policy.Migrations(), func(a *App) (serviceModule, error) {
			return policy.New(policy.Config{}, policy.Deps{Logger: a.logger, Pool: a.pool, Bus: a.bus, KV: a.kv, Registerer: a.registry, Dial: a.dialService})
		}},
		{config.ServiceWebhooks, webhooks.Migrations(), func(a *App) (serviceModule, error) {
			allowed := a.cfg.Webhooks.AllowedAddresses
			if a.mode == config.ModeDev {
				// Local receivers are what developers test against.
				allowed = append(slices.Clone(allowed), "127.0.0.0/8", "::1")
			}
			m, err := webhooks.New(webhooks.Config{SecretKey: a.cfg.Webhooks.SecretKey, AllowedAddresses: allowed},
				webhooks.Deps{Logger: a.logger, Pool: a.pool, Bus: a.bus, KV: a.kv, Registerer: a.registry, Dial: a.dialService, Keyring: a.keys})
			return m, err
		}},
		{config.ServiceUsage, usage.Migrations(), func(a *App) (serviceModule, error) {
			return usage.New(usage.Config{}, usage.Deps{
				Logger: a.logger, Pool: a.pool, Bus: a.bus, KV: a.kv, Registerer: a.registry, Dial: a.dialService,
				Limiter: a.limiter,
			})
		}},
	}
}

// identityConfig maps the configuration onto the identity service's settings.
func (a *App) identityConfig() identity.Config {
	c := a.cfg
	cfg := identity.Config{
		APIKeyPepper: c.Auth.APIKeyPepper,
		Tokens: identity.TokenConfig{
			Issuer: c.Auth.TokenIssuer, Audience: c.Auth.TokenAudience, AccessTTL: c.Auth.AccessTokenTTL,
			SessionTTL: c.Auth.SessionTTL, EncryptionKey: c.Auth.EncryptionKey,
		},
		MFA: identity.MFAConfig{EncryptionKey: c.Auth.EncryptionKey, Issuer: c.Auth.MFAIssuer},
		Invitations: identity.InvitationConfig{
			AcceptURL: c.Invitations.AcceptURL, TTL: c.Invitations.TTL,
			SMTP: identity.SMTPConfig{
				Host: c.SMTP.Host, Port: c.SMTP.Port, Username: c.SMTP.Username, Password: c.SMTP.Password,
				From: c.SMTP.From, TLSMode: c.SMTP.TLSMode,
			},
		},
	}
	cfg.SSO = identity.SSOConfig{
		CallbackBaseURL: c.SSO.CallbackBaseURL, DefaultTenant: c.SSO.DefaultTenant, AllowedAddresses: c.SSO.AllowedAddresses,
	}
	if cfg.SSO.CallbackBaseURL == "" {
		cfg.SSO.CallbackBaseURL = "http://" + c.HTTP.Addr
	}
	if a.mode == config.ModeDev {
		// A local identity provider (Keycloak, Dex) is what developers test against.
		cfg.SSO.AllowedAddresses = append(slices.Clone(cfg.SSO.AllowedAddresses), "127.0.0.0/8", "::1/128")
	}
	if c.SMTP.Host == "" && a.mode == config.ModeDev {
		// Without a mail server, dev writes the accept link (token included) to the
		// log, so invitations can be tried locally.
		cfg.Invitations.Mailer = identity.NewLogMailer(a.logger)
	}
	return cfg
}

// AllMigrations lists every schema's migrations, in dependency-free order.
func AllMigrations() []postgres.Migrations {
	var sets []postgres.Migrations
	for _, s := range services() {
		sets = append(sets, s.migrations)
	}
	return append(sets, keyring.Migrations())
}

// App is one manushya process.
type App struct {
	cfg      *config.Config
	mode     string
	logger   *slog.Logger
	manager  *module.Manager
	registry *prometheus.Registry
	resolved []string

	pool        *pgxpool.Pool
	embedded    *bus.Embedded
	bus         *bus.Bus
	kv          kv.Store
	server      *grpcserver.Server
	grpcLis     net.Listener
	httpLis     net.Listener
	http        *http.Server
	mux         *http.ServeMux
	authn       auth.Authenticator
	services    *auth.ServiceSigner // signs and verifies service-to-service calls
	limiter     *ratelimit.Limiter
	limits      lateLimiter
	auditSink   *audit.BusSink  // audit records of this process, published to the AUDIT stream
	meter       *metering.Meter // usage of this process: api.request of served calls, memory.search
	policyAuthz *policyengine.Authorizer
	identity    *identity.Module
	keys        *keyring.Keyring // field-level encryption (keyring.go)
	conns       []*grpc.ClientConn

	connMu       sync.Mutex
	serviceConns map[string]*grpc.ClientConn
	remoteMu     sync.Mutex
	remote       auth.Authenticator
	revoked      *auth.Revocations

	readyOnce sync.Once
	ready     chan struct{}
	// background runs process-wide loops (revocation following); cancelled when the
	// servers stop.
	background     context.Context
	stopBackground context.CancelFunc
}

// New declares the modules of a process; Run starts the configured targets.
func New(cfg *config.Config, mode string, logger *slog.Logger) *App {
	a := &App{
		cfg: cfg, mode: mode, logger: logger, registry: telemetry.NewRegistry(),
		ready: make(chan struct{}), revoked: auth.NewRevocations(),
		services: auth.NewServiceSigner(cfg.Auth.APIKeyPepper),
	}
	a.auditSink = audit.NewBusSink(audit.BusSinkOptions{Logger: logger, Registerer: a.registry})
	a.meter = metering.New(metering.Options{Logger: logger, Registerer: a.registry})
	a.background, a.stopBackground = context.WithCancel(context.Background())
	a.manager = module.NewManager(logger, module.WithStopTimeout(cfg.HTTP.ShutdownTimeout))
	a.manager.Register(module.Definition{Name: modDatabase, Hidden: true, Init: a.initDatabase})
	a.manager.Register(module.Definition{Name: modBus, Hidden: true, Init: a.initBus})
	a.manager.Register(module.Definition{Name: modKV, Hidden: true, Init: a.initKV})
	a.manager.Register(module.Definition{Name: modServer, Hidden: true, Init: a.initServer})
	a.manager.Register(module.Definition{Name: modKeyring, Hidden: true, Deps: []string{modDatabase, modServer}, Init: a.initKeyring})
	a.manager.Register(module.Definition{
		Name: modLimits, Hidden: true, Deps: []string{modDatabase, modBus, modKV, modServer}, Init: a.initLimits,
	})
	for _, s := range services() {
		a.manager.Register(module.Definition{
			Name: s.name, Deps: []string{modDatabase, modBus, modKV, modServer, modLimits, modKeyring},
			Init: func(context.Context) (module.Service, error) {
				m, err := s.build(a)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", s.name, err)
				}
				m.Register(a.server)
				return m, nil
			},
		})
	}
	a.manager.Register(module.Definition{Name: modGateway, Deps: []string{modServer}, Init: a.initGateway})
	a.manager.OnReady(a.serve)
	a.manager.OnShutdown(func() {
		// Readiness turns false first, so load balancers stop sending new requests
		// while the servers drain.
		a.server.Health.Shutdown()
	})
	return a
}

// Ready is closed once every module has started and the listeners serve.
func (a *App) Ready() <-chan struct{} { return a.ready }

// GRPCAddr and HTTPAddr are the bound addresses (useful with port 0 in tests).
func (a *App) GRPCAddr() string { return a.grpcLis.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() string { return a.httpLis.Addr().String() }

// Identity returns the identity module when this process runs it.
func (a *App) Identity() *identity.Module { return a.identity }

// Run starts the configured targets and blocks until ctx ends, then stops them in
// reverse order.
func (a *App) Run(ctx context.Context) error {
	resolved, err := a.manager.Resolve(a.cfg.Target)
	if err != nil {
		return err
	}
	a.resolved = resolved
	a.logger.Info("starting", "targets", a.cfg.Target, "modules", resolved)
	return a.manager.Run(ctx, a.cfg.Target)
}

func (a *App) runs(name string) bool { return slices.Contains(a.resolved, name) }

func (a *App) initDatabase(ctx context.Context) (module.Service, error) {
	var sets []postgres.Migrations
	for _, s := range services() {
		if a.runs(s.name) {
			sets = append(sets, s.migrations)
		}
	}
	if a.runs(modKeyring) {
		sets = append(sets, keyring.Migrations())
	}
	if a.mode == config.ModeDev {
		migrateURL := a.cfg.Database.MigrateURL
		if migrateURL == "" {
			migrateURL = a.cfg.Database.URL
		}
		if err := postgres.Migrate(ctx, migrateURL, a.cfg.Database.AppRole, AllMigrations()...); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
	}
	pool, err := postgres.Connect(ctx, a.cfg.Database.URL, postgres.WithMaxConns(a.cfg.Database.MaxConns))
	if err != nil {
		return nil, err
	}
	if err := postgres.CheckAppRole(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	if err := postgres.CheckSchema(ctx, pool, sets...); err != nil {
		pool.Close()
		return nil, err
	}
	a.pool = pool
	return module.Funcs{StopFunc: func(context.Context) error { pool.Close(); return nil }}, nil
}

func (a *App) initBus(ctx context.Context) (module.Service, error) {
	url := a.cfg.NATS.URL
	if url == "" {
		emb, err := bus.StartEmbedded(a.cfg.NATS.EmbeddedDir, -1)
		if err != nil {
			return nil, fmt.Errorf("start embedded NATS: %w", err)
		}
		a.embedded = emb
		url = emb.URL()
		a.logger.Info("embedded NATS JetStream started", "url", url, "dir", a.cfg.NATS.EmbeddedDir)
	}
	b, err := bus.Connect(ctx, url, "manushya", bus.WithLogger(a.logger))
	if err != nil {
		a.stopEmbedded()
		return nil, err
	}
	if _, err := b.EnsureStream(ctx); err != nil {
		b.Close()
		a.stopEmbedded()
		return nil, err
	}
	if _, err := b.EnsureAuditStream(ctx); err != nil {
		b.Close()
		a.stopEmbedded()
		return nil, err
	}
	a.bus = b
	// Audit records of this process (requests, sign-ins, authorization
	// decisions) go to the audit stream, whatever services run here.
	a.auditSink.Start(b)
	a.meter.Start(b.JS)
	return module.Funcs{StopFunc: func(ctx context.Context) error {
		// The servers have drained by now: publish what they recorded, then close.
		if err := a.auditSink.Close(ctx); err != nil {
			a.logger.Error("audit records not flushed", "err", err)
		}
		if err := a.meter.Close(ctx, b.JS); err != nil {
			a.logger.Error("usage not flushed", "err", err)
		}
		b.Close()
		a.stopEmbedded()
		return nil
	}}, nil
}

func (a *App) stopEmbedded() {
	if a.embedded != nil {
		a.embedded.Shutdown()
		a.embedded = nil
	}
}

func (a *App) initKV(ctx context.Context) (module.Service, error) {
	store, err := kv.Open(ctx, a.cfg.Redis.URL)
	if err != nil {
		return nil, err
	}
	a.kv = store
	return module.Funcs{StopFunc: func(context.Context) error { return store.Close() }}, nil
}

// initServer creates the gRPC server and binds both listeners, so a taken port fails
// start-up at once; serving begins only when every module has started.
func (a *App) initServer(context.Context) (module.Service, error) {
	a.authn = auth.AuthenticatorFunc(a.authenticate)
	// Authorization is decided by each tenant's policies (baselines included), read
	// from the policy schema and reloaded when the policy service announces a change.
	a.policyAuthz = policyengine.NewAuthorizer(policyengine.LoaderFunc(
		func(ctx context.Context, tenant string) ([]policyengine.Policy, error) {
			if a.pool == nil {
				return nil, errors.New("no database in this process")
			}
			return policy.NewLoader(a.pool).LoadPolicies(ctx, tenant)
		}), policyengine.AuthorizerConfig{Options: policyengine.Options{
		Logger: a.logger, Metrics: policyengine.NewMetrics(a.registry),
	}, OnDecision: audit.DecisionRecorder(a.auditSink), AllowSample: a.cfg.Policy.AuditAllowSample,
		// Policies may read the caller's claims (acts_for): loaded only then.
		PrincipalClaims: func(ctx context.Context, tenant, ident string) (map[string]any, error) {
			if a.pool == nil {
				return nil, errors.New("no database in this process")
			}
			return identity.PrincipalClaims(a.pool)(ctx, tenant, ident)
		}})
	srv, err := grpcserver.New(grpcserver.Options{
		Logger: a.logger, Registerer: a.registry, Authenticator: a.authn, Authorizer: a.policyAuthz,
		RateLimiter: &a.limits, Observers: []grpc.UnaryServerInterceptor{audit.UnaryServerInterceptor(a.auditSink), a.meter.UnaryServerInterceptor()},
		MaxRecvBytes: int(a.cfg.HTTP.MaxBodyBytes) + 64<<10,
	})
	if err != nil {
		return nil, err
	}
	a.server = srv
	if a.grpcLis, err = net.Listen("tcp", a.cfg.GRPC.Addr); err != nil {
		return nil, fmt.Errorf("grpc.addr: listen on %s: %w", a.cfg.GRPC.Addr, err)
	}
	if a.httpLis, err = net.Listen("tcp", a.cfg.HTTP.Addr); err != nil {
		_ = a.grpcLis.Close()
		return nil, fmt.Errorf("http.addr: listen on %s: %w", a.cfg.HTTP.Addr, err)
	}
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.Handle("GET /metrics", telemetry.MetricsHandler(a.registry))
	a.http = &http.Server{Handler: a.mux, ReadHeaderTimeout: 10 * time.Second}
	return module.Funcs{StopFunc: a.stopServers}, nil
}

func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if !a.manager.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"not ready"}`))
		return
	}
	if a.pool != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.pool.Ping(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"database unreachable"}`))
			return
		}
	}
	_, _ = w.Write([]byte(`{"status":"ready"}`))
}

// serve starts both listeners; it runs once every module has started.
func (a *App) serve() {
	if a.bus != nil && a.identity == nil {
		// Access tokens are verified here; learn of revoked sessions within a second.
		go func() {
			if err := a.revoked.Follow(a.background, a.bus.JS, a.bus.StreamName(), a.logger); err != nil && a.background.Err() == nil {
				a.logger.Error("following session revocations stopped", "err", err)
			}
		}()
	}
	if a.bus != nil {
		if err := a.policyAuthz.Subscribe(a.bus); err != nil {
			// Policies still reload every minute; log rather than refuse to serve.
			a.logger.Error("subscribe to policy changes", "err", err)
		}
	}
	a.server.InitializeMetrics()
	for _, s := range services() {
		if a.runs(s.name) {
			a.server.Health.SetServingStatus(s.name, healthpb.HealthCheckResponse_SERVING)
		}
	}
	go func() {
		if err := a.server.Serve(a.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			a.logger.Error("gRPC server stopped", "err", err)
		}
	}()
	go func() {
		if err := a.http.Serve(a.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("HTTP server stopped", "err", err)
		}
	}()
	a.logger.Info("serving", "grpc", a.GRPCAddr(), "http", a.HTTPAddr())
	a.readyOnce.Do(func() { close(a.ready) })
}

// stopServers drains in-flight requests: HTTP first (the gateway's requests go
// through gRPC), then gRPC, each bounded by the shutdown timeout.
func (a *App) stopServers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.HTTP.ShutdownTimeout)
	defer cancel()
	httpErr := a.http.Shutdown(ctx)
	if errors.Is(httpErr, http.ErrServerClosed) {
		httpErr = nil
	}
	done := make(chan struct{})
	go func() { a.server.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		a.server.Stop()
	}
	for _, c := range a.conns {
		_ = c.Close()
	}
	_ = a.policyAuthz.Close()
	a.stopBackground()
	return httpErr
}

// authenticate verifies credentials locally when the identity service runs in this
// process, and otherwise asks it over gRPC.
func (a *App) authenticate(ctx context.Context, cred auth.Credential) (*auth.Principal, error) {
	if cred.Kind == auth.CredentialService {
		return a.services.Verify(cred.Value)
	}
	if a.identity != nil {
		return a.identity.Authenticator().Authenticate(ctx, cred)
	}
	remote, err := a.remoteAuth()
	if err != nil {
		return nil, err
	}
	return remote.Authenticate(ctx, cred)
}

// remoteAuth verifies credentials in a process without the identity service:
// access tokens locally against the identity service's published keys (revoked
// sessions followed on the bus), API keys by asking the identity service.
func (a *App) remoteAuth() (auth.Authenticator, error) {
	a.remoteMu.Lock()
	defer a.remoteMu.Unlock()
	if a.remote == nil {
		conn, err := a.dialService(config.ServiceIdentity)
		if err != nil {
			return nil, fmt.Errorf("identity service client: %w", err)
		}
		jwt, err := auth.NewJWTVerifier(auth.JWTVerifierConfig{
			Keys:   auth.NewJWKSKeys(identityv1.NewAuthServiceClient(conn), 0),
			Issuer: a.cfg.Auth.TokenIssuer, Audience: a.cfg.Auth.TokenAudience, Revoked: a.revoked,
		})
		if err != nil {
			return nil, err
		}
		a.remote = auth.Split(jwt, auth.NewRemote(identityv1.NewCredentialServiceClient(conn), 0))
	}
	return a.remote, nil
}

// serviceAddr is where to reach a service: this process's own listener when it runs
// here (its real port, even when grpc.addr asked for port 0), else the configured
// address.
func (a *App) serviceAddr(name string) string {
	if a.runs(name) && a.grpcLis != nil {
		return a.GRPCAddr()
	}
	return a.cfg.ServiceAddr(name)
}

// dialService returns a client for a service by name, dialled once and shared:
// this process's own listener when the service runs here, else its configured
// address.
func (a *App) dialService(name string) (grpc.ClientConnInterface, error) {
	a.connMu.Lock()
	defer a.connMu.Unlock()
	if c, ok := a.serviceConns[name]; ok {
		return c, nil
	}
	c, err := a.dial(a.serviceAddr(name))
	if err != nil {
		return nil, err
	}
	if a.serviceConns == nil {
		a.serviceConns = map[string]*grpc.ClientConn{}
	}
	a.serviceConns[name] = c
	return c, nil
}

// dial opens a client to another service; connections close with the server module.
func (a *App) dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, a.dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	a.conns = append(a.conns, conn)
	return conn, nil
}

func (a *App) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithUnaryInterceptor(a.services.UnaryClientInterceptor()),
	}
}

// initLimits builds the rate limiter (Redis when configured, else in-process) and the
// quota checker, and puts them into the interceptor chain of the server.
func (a *App) initLimits(ctx context.Context) (module.Service, error) {
	opts := ratelimit.Options{
		Source: usage.NewLimitSource(a.pool), Fallback: ratelimit.Fallback(a.cfg.RateLimit.Fallback),
		Shadow: a.cfg.RateLimit.Shadow, Logger: a.logger, Registerer: a.registry,
	}
	if rc, ok := kv.RedisClient(a.kv); ok {
		opts.Redis = rc
	}
	limiter, err := ratelimit.New(opts)
	if err != nil {
		return nil, err
	}
	a.limiter = limiter
	a.limits.set(ratelimit.Chain{limiter, usage.NewQuotaChecker(a.pool, a.logger, 10*time.Second)})
	loops := worker.NewGroup(a.logger)
	loops.Go(ctx, "rate limit changes", func(ctx context.Context) error { return limiter.Watch(ctx, a.bus.Conn) })
	return module.Funcs{StopFunc: loops.Stop}, nil
}

// lateLimiter lets the server be built before the limiter it will use exists: until
// set, it lets every request through.
type lateLimiter struct {
	v atomic.Pointer[ratelimit.Chain]
}

func (l *lateLimiter) set(c ratelimit.Chain) { l.v.Store(&c) }

// Allow implements grpcserver.RateLimiter.
func (l *lateLimiter) Allow(ctx context.Context, p *auth.Principal, a authz.Access) error {
	if c := l.v.Load(); c != nil {
		return c.Allow(ctx, p, a)
	}
	return nil
}

func (a *App) initGateway(ctx context.Context) (module.Service, error) {
	upstreams := map[string]string{}
	for _, s := range services() {
		upstreams[s.name] = a.serviceAddr(s.name)
	}
	gw, err := gateway.New(ctx, gateway.Config{
		Upstreams: upstreams, MaxBodyBytes: a.cfg.HTTP.MaxBodyBytes, DialOptions: a.dialOptions(),
	}, a.logger)
	if err != nil {
		return nil, err
	}
	h := gw.Handler()
	a.mux.Handle("/v1/", h)
	a.mux.Handle("/.well-known/", h)
	return module.Funcs{StopFunc: func(context.Context) error { return gw.Close() }}, nil
}
