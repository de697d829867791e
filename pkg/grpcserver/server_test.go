package grpcserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

// Credentials the fake authenticator knows.
const (
	adminKey     = "mk_test_admin000000000000000000000000000000000"
	limitedKey   = "mk_test_limited00000000000000000000000000000000"
	brokenKey    = "mk_test_broken000000000000000000000000000000000"
	userToken    = "eyJ.user.token"
	unknownToken = "eyJ.unknown.token"
)

// Ids GetIdentity treats specially.
const (
	okID      = "0190f0f0-0000-7000-8000-000000000001"
	panicID   = "0190f0f0-0000-7000-8000-0000000000aa"
	failID    = "0190f0f0-0000-7000-8000-0000000000bb"
	missingID = "0190f0f0-0000-7000-8000-0000000000cc"

	// secretCause must never reach a client.
	secretCause = "pq: password authentication failed for manushya_app@10.1.2.3"
)

var principals = map[string]*auth.Principal{
	adminKey:   {TenantID: "tenant-1", IdentityID: "admin-1", Kind: auth.KindUser, Roles: []string{auth.RoleAdmin}, APIKeyID: "key-1"},
	limitedKey: {TenantID: "tenant-1", IdentityID: "limited", Kind: auth.KindService, Roles: []string{auth.RoleAdmin}},
	brokenKey:  {TenantID: "tenant-1", IdentityID: "limiter-broken", Kind: auth.KindService, Roles: []string{auth.RoleAdmin}},
	userToken:  {TenantID: "tenant-1", IdentityID: "user-1", Kind: auth.KindUser, Roles: []string{auth.RoleUser}, SessionID: "s-1"},
}

func fakeAuthenticate(_ context.Context, cred auth.Credential) (*auth.Principal, error) {
	p, ok := principals[cred.Value]
	wantKind := auth.CredentialJWT
	if strings.HasPrefix(cred.Value, auth.APIKeyPrefix) {
		wantKind = auth.CredentialAPIKey
	}
	if !ok || cred.Kind != wantKind {
		return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN, "credential not recognised")
	}
	return p, nil
}

type identityServer struct {
	identityv1.UnimplementedIdentityServiceServer
	calls atomic.Int32
}

func (s *identityServer) GetIdentity(ctx context.Context, req *identityv1.GetIdentityRequest) (*identityv1.GetIdentityResponse, error) {
	s.calls.Add(1)
	switch req.GetId() {
	case panicID:
		panic("assignment to entry in nil map")
	case failID:
		return nil, fmt.Errorf("load identity %s: %w", req.GetId(), errors.New(secretCause))
	case missingID:
		return nil, apierr.NotFound("identity", req.GetId())
	}
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, errors.New("handler reached without a principal")
	}
	if telemetry.RequestID(ctx) == "" {
		return nil, errors.New("handler reached without a request id")
	}
	return &identityv1.GetIdentityResponse{Identity: &identityv1.Identity{Id: req.GetId(), TenantId: p.TenantID}}, nil
}

func (s *identityServer) CreateIdentity(_ context.Context, req *identityv1.CreateIdentityRequest) (*identityv1.CreateIdentityResponse, error) {
	s.calls.Add(1)
	return &identityv1.CreateIdentityResponse{Identity: &identityv1.Identity{Id: okID, ExternalId: req.GetExternalId()}}, nil
}

func (s *identityServer) ListIdentities(context.Context, *identityv1.ListIdentitiesRequest) (*identityv1.ListIdentitiesResponse, error) {
	s.calls.Add(1)
	return &identityv1.ListIdentitiesResponse{Identities: []*identityv1.Identity{{Id: okID}}}, nil
}

type credentialServer struct {
	identityv1.UnimplementedCredentialServiceServer
}

// IntrospectCredential answers with the principal the chain put in the context, if any.
func (credentialServer) IntrospectCredential(ctx context.Context, _ *identityv1.IntrospectCredentialRequest) (*identityv1.IntrospectCredentialResponse, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		// Like the identity service: report why a credential that was sent failed.
		if err := auth.CredentialError(ctx); err != nil {
			return nil, err
		}
		return &identityv1.IntrospectCredentialResponse{}, nil
	}
	return &identityv1.IntrospectCredentialResponse{TenantId: p.TenantID, IdentityId: p.IdentityID}, nil
}

// logBuffer collects the server's JSON log lines; the server writes from its own
// goroutines, so access is locked.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records returns the log records with message msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), sc.Text())
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	require.NoError(t, sc.Err())
	return out
}

type env struct {
	conn       *grpc.ClientConn
	identity   identityv1.IdentityServiceClient
	credential identityv1.CredentialServiceClient
	handler    *identityServer
	logs       *logBuffer
	reg        *prometheus.Registry
	srv        *grpcserver.Server
}

// start serves a server built from the default test options, changed by configure,
// on a loopback port, with the identity and credential services registered.
func start(t *testing.T, configure func(*grpcserver.Options), register ...func(*grpc.Server)) *env {
	t.Helper()
	e := &env{handler: &identityServer{}, logs: &logBuffer{}, reg: prometheus.NewRegistry()}
	opts := grpcserver.Options{
		Logger:        slog.New(telemetry.NewContextHandler(slog.NewJSONHandler(e.logs, nil))),
		Registerer:    e.reg,
		Authenticator: auth.AuthenticatorFunc(fakeAuthenticate),
	}
	if configure != nil {
		configure(&opts)
	}
	srv, err := grpcserver.New(opts)
	require.NoError(t, err)
	e.srv = srv
	identityv1.RegisterIdentityServiceServer(srv, e.handler)
	identityv1.RegisterCredentialServiceServer(srv, credentialServer{})
	for _, r := range register {
		r(srv.Server)
	}
	srv.InitializeMetrics()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		require.NoError(t, <-done)
	})

	e.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.conn.Close()) })
	e.identity = identityv1.NewIdentityServiceClient(e.conn)
	e.credential = identityv1.NewCredentialServiceClient(e.conn)
	return e
}

func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-api-key", key)
}

func withBearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// requireStatus checks err's code and documented reason and returns its status.
func requireStatus(t *testing.T, err error, code codes.Code, reason errorsv1.ErrorReason) *status.Status {
	t.Helper()
	require.Error(t, err)
	st := status.Convert(err)
	require.Equal(t, code, st.Code(), st.Message())
	require.Equal(t, reason, apierr.ReasonOf(err))
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	require.NotNil(t, info, "every error carries an ErrorInfo")
	require.Equal(t, apierr.Domain, info.GetDomain())
	return st
}

func badRequestFields(st *status.Status) []string {
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}

func TestAuthenticatedCall(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	resp, err := e.identity.GetIdentity(withKey(t.Context(), adminKey), &identityv1.GetIdentityRequest{Id: okID})
	require.NoError(t, err)
	require.Equal(t, okID, resp.GetIdentity().GetId())
	require.Equal(t, "tenant-1", resp.GetIdentity().GetTenantId(), "the handler sees the principal")

	list, err := e.identity.ListIdentities(withKey(t.Context(), adminKey), &identityv1.ListIdentitiesRequest{PageSize: 10})
	require.NoError(t, err)
	require.Len(t, list.GetIdentities(), 1)

	created, err := e.identity.CreateIdentity(withKey(t.Context(), adminKey), &identityv1.CreateIdentityRequest{ExternalId: "ada"})
	require.NoError(t, err)
	require.Equal(t, "ada", created.GetIdentity().GetExternalId())
	require.Equal(t, int32(3), e.handler.calls.Load())
}

func TestMissingCredential(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	_, err := e.identity.GetIdentity(t.Context(), &identityv1.GetIdentityRequest{Id: okID})
	st := requireStatus(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING)
	require.Contains(t, st.Message(), "Authorization: Bearer")
	require.Zero(t, e.handler.calls.Load())
}

func TestBadCredentials(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	for name, tc := range map[string]struct {
		ctx    context.Context
		reason errorsv1.ErrorReason
	}{
		"unknown token":       {withBearer(t.Context(), unknownToken), errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN},
		"unknown key":         {withKey(t.Context(), "mk_test_nope"), errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN},
		"basic auth":          {metadata.AppendToOutgoingContext(t.Context(), "authorization", "Basic YTpi"), errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED},
		"empty bearer":        {metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "), errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED},
		"token sent as a key": {withKey(t.Context(), userToken), errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := e.identity.GetIdentity(tc.ctx, &identityv1.GetIdentityRequest{Id: okID})
			requireStatus(t, err, codes.Unauthenticated, tc.reason)

			// A public method runs anonymously, and can tell why the credential failed.
			_, err = e.credential.IntrospectCredential(tc.ctx, &identityv1.IntrospectCredentialRequest{})
			requireStatus(t, err, codes.Unauthenticated, tc.reason)
		})
	}
	require.Zero(t, e.handler.calls.Load())
}

func TestPublicMethod(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	resp, err := e.credential.IntrospectCredential(t.Context(), &identityv1.IntrospectCredentialRequest{})
	require.NoError(t, err, "public methods accept anonymous callers")
	require.Empty(t, resp.GetIdentityId())

	resp, err = e.credential.IntrospectCredential(withBearer(t.Context(), userToken), &identityv1.IntrospectCredentialRequest{})
	require.NoError(t, err)
	require.Equal(t, "user-1", resp.GetIdentityId(), "a public method still sees the principal sent")

	health, err := healthpb.NewHealthClient(e.conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err, "gRPC health needs no credential")
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, health.GetStatus())
}

func TestValidation(t *testing.T) {
	t.Parallel()
	e := start(t, nil)

	_, err := e.identity.GetIdentity(withKey(t.Context(), adminKey), &identityv1.GetIdentityRequest{Id: "not-a-uuid"})
	st := requireStatus(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	require.Equal(t, []string{"id"}, badRequestFields(st))
	require.True(t, strings.HasPrefix(st.Message(), "id: "), st.Message())

	_, err = e.identity.CreateIdentity(withKey(t.Context(), adminKey), &identityv1.CreateIdentityRequest{
		ExternalId: "ada", Roles: []string{"admin", "Not A Role"},
	})
	st = requireStatus(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	require.Equal(t, []string{"roles[1]"}, badRequestFields(st))

	_, err = e.identity.ListIdentities(withKey(t.Context(), adminKey), &identityv1.ListIdentitiesRequest{PageSize: 1001, PageToken: strings.Repeat("x", 513)})
	st = requireStatus(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	require.ElementsMatch(t, []string{"page_size", "page_token"}, badRequestFields(st))
	require.Contains(t, st.Message(), "page_size")
	require.Contains(t, st.Message(), "page_token")

	require.Zero(t, e.handler.calls.Load(), "invalid requests never reach the handler")
}

// Authentication runs before validation: a stranger learns nothing about the
// request's shape, only that a credential is needed.
func TestAuthenticationBeforeValidation(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	invalid := &identityv1.GetIdentityRequest{Id: "not-a-uuid"}

	_, err := e.identity.GetIdentity(t.Context(), invalid)
	requireStatus(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING)

	_, err = e.identity.GetIdentity(withBearer(t.Context(), unknownToken), invalid)
	requireStatus(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN)

	// Validation comes before authorization, in the documented order.
	_, err = e.identity.GetIdentity(withBearer(t.Context(), userToken), invalid)
	requireStatus(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
}

func TestAuthorizationDenied(t *testing.T) {
	t.Parallel()
	e := start(t, nil)

	_, err := e.identity.CreateIdentity(withBearer(t.Context(), userToken), &identityv1.CreateIdentityRequest{ExternalId: "eve"})
	st := requireStatus(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	require.Contains(t, st.Message(), "identity.create")

	_, err = e.identity.GetIdentity(withBearer(t.Context(), userToken), &identityv1.GetIdentityRequest{Id: okID})
	requireStatus(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	require.Zero(t, e.handler.calls.Load())
}

type decision struct {
	principal *auth.Principal
	access    authz.Access
}

type recordingAuthorizer struct {
	mu   sync.Mutex
	seen []decision
}

func (r *recordingAuthorizer) Authorize(_ context.Context, p *auth.Principal, a authz.Access) error {
	r.mu.Lock()
	r.seen = append(r.seen, decision{p, a})
	r.mu.Unlock()
	if a.Action == "create" {
		return apierr.PermissionDenied("policy forbids %s", a.Permission)
	}
	return nil
}

func (r *recordingAuthorizer) decisions() []decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]decision(nil), r.seen...)
}

func TestCustomAuthorizer(t *testing.T) {
	t.Parallel()
	az := &recordingAuthorizer{}
	e := start(t, func(o *grpcserver.Options) { o.Authorizer = az })

	// The user role would be denied by BuiltinRoles; this authorizer decides instead.
	_, err := e.identity.GetIdentity(withBearer(t.Context(), userToken), &identityv1.GetIdentityRequest{Id: okID})
	require.NoError(t, err)
	_, err = e.identity.CreateIdentity(withKey(t.Context(), adminKey), &identityv1.CreateIdentityRequest{ExternalId: "x"})
	requireStatus(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	_, err = e.credential.IntrospectCredential(withKey(t.Context(), adminKey), &identityv1.IntrospectCredentialRequest{})
	require.NoError(t, err)

	got := az.decisions()
	require.Len(t, got, 2, "public methods are not put to the authorizer")
	require.Same(t, principals[userToken], got[0].principal)
	require.Equal(t, authz.Access{
		Method: identityv1.IdentityService_GetIdentity_FullMethodName, Permission: "identity.read",
		Resource: "identity", Action: "read",
	}, got[0].access)
	require.Same(t, principals[adminKey], got[1].principal)
	require.Equal(t, "identity.create", got[1].access.Permission)
}

func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	e := start(t, nil)

	var header metadata.MD
	_, err := e.identity.GetIdentity(withKey(t.Context(), adminKey), &identityv1.GetIdentityRequest{Id: panicID}, grpc.Header(&header))
	st := requireStatus(t, err, codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL)
	require.Equal(t, "internal error", st.Message())
	require.NotContains(t, st.Message(), "nil map")

	// The server survives and serves the next call.
	_, err = e.identity.GetIdentity(withKey(t.Context(), adminKey), &identityv1.GetIdentityRequest{Id: okID})
	require.NoError(t, err)

	ids := header.Get(grpcserver.RequestIDHeader)
	require.Len(t, ids, 1)
	panics := e.logs.records(t, "panic in handler")
	require.Len(t, panics, 1)
	require.Equal(t, "assignment to entry in nil map", panics[0]["panic"])
	require.Contains(t, panics[0]["stack"], "GetIdentity")
	require.Equal(t, ids[0], panics[0][telemetry.RequestIDKey], "the panic is logged with the request id")

	finished := finishedCalls(t, e.logs, "GetIdentity")
	require.Len(t, finished, 2, "the panicking call gets its log line too")
	require.Equal(t, "Internal", finished[0]["grpc.code"])
	require.Equal(t, ids[0], finished[0][telemetry.RequestIDKey])
}

func finishedCalls(t *testing.T, logs *logBuffer, method string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, rec := range logs.records(t, "finished call") {
		if rec["grpc.method"] == method {
			out = append(out, rec)
		}
	}
	return out
}

func TestHandlerPlainErrorIsMaskedAndLogged(t *testing.T) {
	t.Parallel()
	e := start(t, nil)

	var header metadata.MD
	_, err := e.identity.GetIdentity(withKey(t.Context(), adminKey), &identityv1.GetIdentityRequest{Id: failID}, grpc.Header(&header))
	st := requireStatus(t, err, codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL)
	require.Equal(t, "internal error", st.Message())
	require.NotContains(t, err.Error(), "10.1.2.3")
	require.NotContains(t, fmt.Sprint(st.Proto()), "10.1.2.3", "not in the details either")

	ids := header.Get(grpcserver.RequestIDHeader)
	require.Len(t, ids, 1)
	internal := e.logs.records(t, "internal error")
	require.Len(t, internal, 1)
	require.Contains(t, internal[0]["err"], secretCause)
	require.Contains(t, internal[0]["err"], "load identity "+failID)
	require.Equal(t, identityv1.IdentityService_GetIdentity_FullMethodName, internal[0]["method"])
	require.Equal(t, ids[0], internal[0][telemetry.RequestIDKey])
	require.Equal(t, "ERROR", internal[0]["level"])

	finished := finishedCalls(t, e.logs, "GetIdentity")
	require.Len(t, finished, 1)
	require.Equal(t, "Internal", finished[0]["grpc.code"])
	require.NotContains(t, finished[0]["grpc.error"], "10.1.2.3", "the cause is logged once, where it is labelled")
}

func TestHandlerDomainErrorPassesThrough(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	_, err := e.identity.GetIdentity(withKey(t.Context(), adminKey), &identityv1.GetIdentityRequest{Id: missingID})
	st := requireStatus(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	require.Equal(t, fmt.Sprintf("identity %q not found", missingID), st.Message())
	require.Empty(t, e.logs.records(t, "internal error"), "expected errors are not logged as internal")
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	longest := strings.Repeat("r", 128)

	for name, tc := range map[string]struct {
		sent []string // nil: no header
		keep bool
	}{
		"absent":         {},
		"client chosen":  {sent: []string{"req-42_abc.DEF:1"}, keep: true},
		"128 characters": {sent: []string{longest}, keep: true},
		"too long":       {sent: []string{longest + "r"}},
		"with a space":   {sent: []string{"req 42"}},
		"empty":          {sent: []string{""}},
		"first of two":   {sent: []string{"req-first", "req-second"}, keep: true},
		"quotes":         {sent: []string{`req"},{"admin":true`}, keep: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := withKey(t.Context(), adminKey)
			for _, id := range tc.sent {
				ctx = metadata.AppendToOutgoingContext(ctx, grpcserver.RequestIDHeader, id)
			}
			var header metadata.MD
			_, err := e.identity.GetIdentity(ctx, &identityv1.GetIdentityRequest{Id: okID}, grpc.Header(&header))
			require.NoError(t, err)
			got := header.Get(grpcserver.RequestIDHeader)
			require.Len(t, got, 1)
			if tc.keep {
				require.Equal(t, tc.sent[0], got[0])
				return
			}
			id, err := uuid.Parse(got[0])
			require.NoError(t, err, "a replaced id is a new UUID: %q", got[0])
			require.Equal(t, uuid.Version(7), id.Version())
		})
	}
}

func TestRequestIDOnFailures(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	var header metadata.MD
	ctx := metadata.AppendToOutgoingContext(t.Context(), grpcserver.RequestIDHeader, "req-denied")
	_, err := e.identity.GetIdentity(ctx, &identityv1.GetIdentityRequest{Id: okID}, grpc.Header(&header))
	requireStatus(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING)
	require.Equal(t, []string{"req-denied"}, header.Get(grpcserver.RequestIDHeader))

	finished := finishedCalls(t, e.logs, "GetIdentity")
	require.Len(t, finished, 1)
	require.Equal(t, "req-denied", finished[0][telemetry.RequestIDKey])
	require.Equal(t, "Unauthenticated", finished[0]["grpc.code"])
}

type allowCall struct {
	principal *auth.Principal
	access    authz.Access
	requestID string
}

type limiter struct {
	mu    sync.Mutex
	calls []allowCall
}

func (l *limiter) Allow(ctx context.Context, p *auth.Principal, a authz.Access) error {
	l.mu.Lock()
	l.calls = append(l.calls, allowCall{p, a, telemetry.RequestID(ctx)})
	l.mu.Unlock()
	switch p.IdentityID {
	case "limited":
		return apierr.New(codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_RATE_LIMITED, "slow down")
	case "limiter-broken":
		return errors.New("redis: dial tcp 10.9.9.9:6379: connection refused")
	}
	return nil
}

func (l *limiter) seen() []allowCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]allowCall(nil), l.calls...)
}

func TestRateLimiter(t *testing.T) {
	t.Parallel()
	lim := &limiter{}
	e := start(t, func(o *grpcserver.Options) { o.RateLimiter = lim })

	_, err := e.identity.GetIdentity(withKey(t.Context(), adminKey), &identityv1.GetIdentityRequest{Id: okID})
	require.NoError(t, err)

	_, err = e.identity.GetIdentity(withKey(t.Context(), limitedKey), &identityv1.GetIdentityRequest{Id: okID})
	st := requireStatus(t, err, codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_RATE_LIMITED)
	require.Equal(t, "slow down", st.Message())

	// A limiter that fails is an internal error, masked like a handler's.
	_, err = e.identity.GetIdentity(withKey(t.Context(), brokenKey), &identityv1.GetIdentityRequest{Id: okID})
	st = requireStatus(t, err, codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL)
	require.Equal(t, "internal error", st.Message())
	internal := e.logs.records(t, "internal error")
	require.Len(t, internal, 1)
	require.Contains(t, internal[0]["err"], "10.9.9.9")

	// Anonymous calls of public methods have no principal to limit.
	_, err = e.credential.IntrospectCredential(t.Context(), &identityv1.IntrospectCredentialRequest{})
	require.NoError(t, err)
	// Refused credentials never reach the limiter.
	_, err = e.identity.GetIdentity(withBearer(t.Context(), unknownToken), &identityv1.GetIdentityRequest{Id: okID})
	requireStatus(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN)

	calls := lim.seen()
	require.Len(t, calls, 3)
	require.Same(t, principals[adminKey], calls[0].principal)
	require.Equal(t, "identity.read", calls[0].access.Permission)
	require.Equal(t, identityv1.IdentityService_GetIdentity_FullMethodName, calls[0].access.Method)
	require.NotEmpty(t, calls[0].requestID)
	require.Same(t, principals[limitedKey], calls[1].principal)
	require.Equal(t, int32(1), e.handler.calls.Load(), "refused calls never reach the handler")
}

func TestAuthenticatorFailures(t *testing.T) {
	t.Parallel()
	e := start(t, func(o *grpcserver.Options) {
		o.Authenticator = auth.AuthenticatorFunc(func(_ context.Context, cred auth.Credential) (*auth.Principal, error) {
			switch cred.Value {
			case "nobody":
				return nil, nil
			case "store-down":
				return nil, errors.New("identity store: dial tcp 10.7.7.7:5432: connection refused")
			case "remote-down":
				return nil, status.Error(codes.Unavailable, "connection error")
			}
			return principals[adminKey], nil
		})
	})

	_, err := e.identity.GetIdentity(withBearer(t.Context(), "nobody"), &identityv1.GetIdentityRequest{Id: okID})
	requireStatus(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN)

	_, err = e.identity.GetIdentity(withBearer(t.Context(), "store-down"), &identityv1.GetIdentityRequest{Id: okID})
	st := requireStatus(t, err, codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL)
	require.Equal(t, "internal error", st.Message())
	internal := e.logs.records(t, "internal error")
	require.Len(t, internal, 1)
	require.Contains(t, internal[0]["err"], "10.7.7.7")

	_, err = e.identity.GetIdentity(withBearer(t.Context(), "remote-down"), &identityv1.GetIdentityRequest{Id: okID})
	requireStatus(t, err, codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE)

	require.Zero(t, e.handler.calls.Load())
}

func TestNoAuthenticator(t *testing.T) {
	t.Parallel()
	e := start(t, func(o *grpcserver.Options) { o.Authenticator = nil })

	_, err := e.identity.GetIdentity(withKey(t.Context(), adminKey), &identityv1.GetIdentityRequest{Id: okID})
	requireStatus(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN)
	_, err = e.identity.GetIdentity(t.Context(), &identityv1.GetIdentityRequest{Id: okID})
	requireStatus(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING)
	_, err = e.credential.IntrospectCredential(t.Context(), &identityv1.IntrospectCredentialRequest{})
	require.NoError(t, err)
}

// undeclaredService is a service whose method has no access option (it is not in
// any proto of ours), registered by hand.
var undeclaredService = grpc.ServiceDesc{
	ServiceName: "manushya.test.v1.UndeclaredService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Do",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := &emptypb.Empty{}
			if err := dec(in); err != nil {
				return nil, err
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/manushya.test.v1.UndeclaredService/Do"}
			return interceptor(ctx, in, info, func(context.Context, any) (any, error) {
				return &emptypb.Empty{}, nil
			})
		},
	}},
}

func TestMethodWithoutAccessDeclarationIsRefused(t *testing.T) {
	t.Parallel()
	e := start(t, nil, func(s *grpc.Server) { s.RegisterService(&undeclaredService, struct{}{}) })

	for _, ctx := range []context.Context{t.Context(), withKey(t.Context(), adminKey)} {
		err := e.conn.Invoke(ctx, "/manushya.test.v1.UndeclaredService/Do", &emptypb.Empty{}, &emptypb.Empty{})
		st := requireStatus(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
		require.Contains(t, st.Message(), "not callable")
	}
	require.NotEmpty(t, e.logs.records(t, "method has no usable access declaration"))
}

func TestMaxRecvBytes(t *testing.T) {
	t.Parallel()
	e := start(t, func(o *grpcserver.Options) { o.MaxRecvBytes = 1024 })
	claims, err := structpb.NewStruct(map[string]any{"bio": strings.Repeat("x", 2048)})
	require.NoError(t, err)
	_, err = e.identity.CreateIdentity(withKey(t.Context(), adminKey), &identityv1.CreateIdentityRequest{ExternalId: "ada", Claims: claims})
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	require.Zero(t, e.handler.calls.Load())

	_, err = e.identity.CreateIdentity(withKey(t.Context(), adminKey), &identityv1.CreateIdentityRequest{ExternalId: "ada"})
	require.NoError(t, err)
}

// counter returns the value of the series of name with exactly the given labels
// among those it names, and whether there is one.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	getIdentity := map[string]string{
		"grpc_service": "manushya.identity.v1.IdentityService", "grpc_method": "GetIdentity", "grpc_type": "unary",
	}
	with := func(code string) map[string]string {
		l := map[string]string{"grpc_code": code}
		maps.Copy(l, getIdentity)
		return l
	}

	// InitializeMetrics created the series before any call.
	started, ok := counter(t, e.reg, "grpc_server_started_total", getIdentity)
	require.True(t, ok)
	require.Zero(t, started)

	_, err := e.identity.GetIdentity(withKey(t.Context(), adminKey), &identityv1.GetIdentityRequest{Id: okID})
	require.NoError(t, err)
	_, err = e.identity.GetIdentity(t.Context(), &identityv1.GetIdentityRequest{Id: okID})
	require.Error(t, err)
	_, err = e.identity.GetIdentity(withKey(t.Context(), adminKey), &identityv1.GetIdentityRequest{Id: panicID})
	require.Error(t, err)

	handled, ok := counter(t, e.reg, "grpc_server_handled_total", with("OK"))
	require.True(t, ok)
	require.InDelta(t, 1, handled, 0)
	handled, ok = counter(t, e.reg, "grpc_server_handled_total", with("Unauthenticated"))
	require.True(t, ok)
	require.InDelta(t, 1, handled, 0)
	handled, ok = counter(t, e.reg, "grpc_server_handled_total", with("Internal"))
	require.True(t, ok, "a panic is counted as an INTERNAL call")
	require.InDelta(t, 1, handled, 0)
	started, _ = counter(t, e.reg, "grpc_server_started_total", getIdentity)
	require.InDelta(t, 3, started, 0)

	families, err := e.reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	require.Contains(t, names, "grpc_server_handling_seconds")
}

func TestMetricsRegistererShared(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := grpcserver.New(grpcserver.Options{Registerer: reg})
	require.NoError(t, err)
	_, err = grpcserver.New(grpcserver.Options{Registerer: reg})
	require.NoError(t, err, "a second server on one registry reuses its collector")

	_, err = grpcserver.New(grpcserver.Options{})
	require.NoError(t, err, "no registerer, no metrics")
}
