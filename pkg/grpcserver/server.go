package grpcserver

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

// RequestIDHeader is the metadata key carrying the request id both ways.
const RequestIDHeader = "x-request-id"

// RateLimiter decides whether a request may proceed. A nil RateLimiter lets every
// request through.
type RateLimiter interface {
	Allow(ctx context.Context, p *auth.Principal, a authz.Access) error
}

// Options configure a server.
type Options struct {
	Logger        *slog.Logger
	Registerer    prometheus.Registerer // nil: no metrics
	Authenticator auth.Authenticator    // nil: every credential is refused
	Authorizer    authz.Authorizer      // nil: authz.BuiltinRoles
	RateLimiter   RateLimiter           // nil: no limit
	// Observers run right after authentication, around everything after it, so they
	// see the caller and the final outcome of every authenticated call, refusals
	// included (the audit log of mutating requests).
	Observers    []grpc.UnaryServerInterceptor
	MaxRecvBytes int // 0: 4 MiB
}

// Server is a gRPC server with its health service.
type Server struct {
	*grpc.Server
	Health  *health.Server
	metrics *grpcprom.ServerMetrics
}

// New builds a server with the full interceptor chain. Register services on it, then
// Serve.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Authorizer == nil {
		opts.Authorizer = authz.BuiltinRoles{}
	}
	if opts.MaxRecvBytes == 0 {
		opts.MaxRecvBytes = 4 << 20
	}
	validator, err := protovalidate.New()
	if err != nil {
		return nil, err
	}
	c := &chain{opts: opts, validator: validator}

	var metrics *grpcprom.ServerMetrics
	unary := []grpc.UnaryServerInterceptor{
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(c.recovered)),
		c.requestIDUnary,
		logging.UnaryServerInterceptor(slogAdapter(opts.Logger), logging.WithLogOnEvents(logging.FinishCall)),
	}
	stream := []grpc.StreamServerInterceptor{
		recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(c.recovered)),
		c.requestIDStream,
		logging.StreamServerInterceptor(slogAdapter(opts.Logger), logging.WithLogOnEvents(logging.FinishCall)),
	}
	if opts.Registerer != nil {
		metrics = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}),
		))
		if err := opts.Registerer.Register(metrics); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return nil, err
			}
			metrics = already.ExistingCollector.(*grpcprom.ServerMetrics)
		}
		unary = append(unary, metrics.UnaryServerInterceptor())
		stream = append(stream, metrics.StreamServerInterceptor())
	}
	// The inner recovery turns a handler's panic into an error while the request id
	// is in the context and before logging and metrics, so the panic is logged with
	// the request id and counted like any other failed call. The outer one still
	// catches panics of the interceptors themselves.
	unary = append(unary, c.authnUnary)
	unary = append(unary, opts.Observers...)
	unary = append(unary, c.rateLimitUnary, c.validateUnary, c.authzUnary,
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(c.recovered)), c.errorsUnary)
	stream = append(stream, c.authStream,
		recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(c.recovered)), c.errorsStream)

	gs := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler()),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(opts.MaxRecvBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	return &Server{Server: gs, Health: hs, metrics: metrics}, nil
}

// InitializeMetrics pre-creates the metric series of every registered method, so
// dashboards show zeroes rather than gaps. Call it after registering services.
func (s *Server) InitializeMetrics() {
	if s.metrics != nil {
		s.metrics.InitializeMetrics(s.Server)
	}
}

type chain struct {
	opts      Options
	validator protovalidate.Validator
}

func (c *chain) recovered(ctx context.Context, p any) error {
	c.opts.Logger.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
	return apierr.Internal(errors.New("panic"))
}

func requestID(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if ids := md.Get(RequestIDHeader); len(ids) > 0 && validRequestID(ids[0]) {
		return ids[0]
	}
	return uuid.Must(uuid.NewV7()).String()
}

// validRequestID keeps client-chosen ids short and printable, since they go to logs.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

func (c *chain) requestIDUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	id := requestID(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
	return h(telemetry.WithRequestID(ctx, id), req)
}

func (c *chain) requestIDStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	id := requestID(ss.Context())
	_ = ss.SetHeader(metadata.Pairs(RequestIDHeader, id))
	return h(srv, &wrappedStream{ServerStream: ss, ctx: telemetry.WithRequestID(ss.Context(), id)})
}

// authenticate reads and verifies the credential and puts the principal in the
// context. Public methods accept anonymous callers; a bad credential is refused even
// there, since the caller meant to be someone and is not.
func (c *chain) authenticate(ctx context.Context, method string) (context.Context, error) {
	access, err := c.access(ctx, method)
	if err != nil {
		return ctx, err
	}
	p, err := c.verify(ctx)
	switch {
	case err != nil && access.Public:
		// A public method needs no identity, so a stale or bad credential sent along
		// (an expired access token with a refresh, say) must not block it. The
		// failure stays in the context for methods that report on credentials.
		return auth.WithCredentialError(ctx, err), nil
	case err != nil:
		return ctx, err
	case p != nil:
		return auth.WithPrincipal(ctx, p), nil
	case access.Public:
		return ctx, nil
	}
	return ctx, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING,
		"this method needs a credential: send \"Authorization: Bearer <token>\" or \"X-API-Key: <key>\"")
}

// verify returns the principal of the request's credential, nil without one.
func (c *chain) verify(ctx context.Context) (*auth.Principal, error) {
	cred, err := auth.CredentialFromMetadata(ctx)
	if err != nil || cred.Kind == auth.CredentialNone {
		return nil, err
	}
	if c.opts.Authenticator == nil {
		return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN, "credential not recognised")
	}
	p, err := c.opts.Authenticator.Authenticate(ctx, cred)
	if err != nil {
		return nil, err
	}
	if p == nil {
		// Authorizers dereference the principal; no answer is no identity.
		return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN, "credential not recognised")
	}
	return p, nil
}

func (c *chain) access(ctx context.Context, method string) (authz.Access, error) {
	access, err := authz.AccessFor(method)
	if err != nil {
		c.opts.Logger.ErrorContext(ctx, "method has no usable access declaration", "method", method, "err", err)
		return authz.Access{}, apierr.PermissionDenied("method %s is not callable", method)
	}
	return access, nil
}

func (c *chain) rateLimit(ctx context.Context, method string) error {
	if c.opts.RateLimiter == nil {
		return nil
	}
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil
	}
	access, err := c.access(ctx, method)
	if err != nil {
		return err
	}
	return c.opts.RateLimiter.Allow(ctx, p, access)
}

// authorize decides the declared access and, when the authorizer can decide on
// loaded resources too, hands the handler an authz.Guard for its attribute checks.
func (c *chain) authorize(ctx context.Context, method string) (context.Context, error) {
	access, err := c.access(ctx, method)
	if err != nil {
		return ctx, err
	}
	if access.Public {
		return ctx, nil
	}
	p, _ := auth.FromContext(ctx)
	if err := c.opts.Authorizer.Authorize(ctx, p, access); err != nil {
		return ctx, err
	}
	if rc, ok := c.opts.Authorizer.(authz.ResourceChecker); ok && p != nil {
		ctx = authz.WithGuard(ctx, authz.NewGuard(rc, p, access))
	}
	return ctx, nil
}

// authnUnary authenticates. Authenticators and rate limiters are pluggable and may
// fail with plain errors (a store that is down); their errors are translated like a
// handler's, so nothing of theirs reaches the client unmasked.
func (c *chain) authnUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := c.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, c.translate(ctx, info.FullMethod, err)
	}
	return h(ctx, req)
}

func (c *chain) rateLimitUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := c.rateLimit(ctx, info.FullMethod); err != nil {
		return nil, c.translate(ctx, info.FullMethod, err)
	}
	return h(ctx, req)
}

func (c *chain) validateUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if msg, ok := req.(proto.Message); ok {
		if err := c.validate(msg); err != nil {
			return nil, err
		}
	}
	return h(ctx, req)
}

func (c *chain) authzUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := c.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// authStream runs authentication, rate limiting and authorization for a stream;
// validation happens per received message.
func (c *chain) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := c.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return c.translate(ctx, info.FullMethod, err)
	}
	if err := c.rateLimit(ctx, info.FullMethod); err != nil {
		return c.translate(ctx, info.FullMethod, err)
	}
	if ctx, err = c.authorize(ctx, info.FullMethod); err != nil {
		return err
	}
	return h(srv, &wrappedStream{ServerStream: ss, ctx: ctx, validate: c.validate})
}

func (c *chain) validate(msg proto.Message) error {
	err := c.validator.Validate(msg)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return apierr.Internal(err)
	}
	vs := make([]apierr.Violation, 0, len(verr.Violations))
	for _, v := range verr.Violations {
		vs = append(vs, apierr.Violation{
			Field:       protovalidate.FieldPathString(v.Proto.GetField()),
			Description: v.Proto.GetMessage(),
		})
	}
	return apierr.InvalidArgument(vs...)
}

func (c *chain) errorsUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		return nil, c.translate(ctx, info.FullMethod, err)
	}
	return resp, nil
}

func (c *chain) errorsStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := h(srv, ss); err != nil {
		return c.translate(ss.Context(), info.FullMethod, err)
	}
	return nil
}

func (c *chain) translate(ctx context.Context, method string, err error) error {
	st, internal := apierr.ToStatus(err)
	if internal {
		c.opts.Logger.ErrorContext(ctx, "internal error", "method", method, "err", err)
	}
	return st.Err()
}

type wrappedStream struct {
	grpc.ServerStream
	ctx      context.Context
	validate func(proto.Message) error
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

func (w *wrappedStream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if msg, ok := m.(proto.Message); ok && w.validate != nil {
		return w.validate(msg)
	}
	return nil
}

func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}
