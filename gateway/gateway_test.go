package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// fakeIdentity stands in for the identity service: just enough behaviour to
// exercise each gateway path. It records the metadata of every call by request id.
type fakeIdentity struct {
	identityv1.UnimplementedIdentityServiceServer

	mu   sync.Mutex
	seen map[string]metadata.MD
}

func (f *fakeIdentity) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]metadata.MD{}
	}
	for _, id := range md.Get(mdRequestID) {
		f.seen[id] = md.Copy()
	}
}

func (f *fakeIdentity) metadataFor(id string) metadata.MD {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[id]
}

// serviceError builds an error the way our services do: an ErrorInfo always, a
// BadRequest for field problems.
func serviceError(code codes.Code, reason, msg string, extra ...*errdetails.BadRequest) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "manushya.ai"})
	if err != nil {
		panic(err)
	}
	for _, d := range extra {
		if st, err = st.WithDetails(d); err != nil {
			panic(err)
		}
	}
	return st.Err()
}

func (f *fakeIdentity) CreateIdentity(ctx context.Context, req *identityv1.CreateIdentityRequest) (*identityv1.CreateIdentityResponse, error) {
	f.record(ctx)
	return &identityv1.CreateIdentityResponse{Identity: &identityv1.Identity{
		Id: "0190a5f2-8c1e-7000-8000-000000000001", ExternalId: req.GetExternalId(), Role: req.GetRole(),
		Kind: req.GetKind(), Roles: req.GetRoles(), Claims: req.GetClaims(), IsActive: true,
	}}, nil
}

func (f *fakeIdentity) GetIdentity(ctx context.Context, req *identityv1.GetIdentityRequest) (*identityv1.GetIdentityResponse, error) {
	f.record(ctx)
	switch req.GetId() {
	case "missing":
		return nil, serviceError(codes.NotFound, "ERROR_REASON_NOT_FOUND", `identity "missing" not found`)
	case "not-a-uuid":
		// What the services' protovalidate interceptor answers.
		return nil, serviceError(codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT", "id: value must be a valid UUID",
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "id", Description: "value must be a valid UUID"}}})
	case "limited":
		_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", "7", "x-ratelimit-limit", "100", "x-ratelimit-remaining", "0"))
		return nil, serviceError(codes.ResourceExhausted, "ERROR_REASON_RATE_LIMITED", "rate limit exceeded")
	case "retry-info":
		st, _ := status.New(codes.ResourceExhausted, "quota exceeded").WithDetails(
			&errdetails.ErrorInfo{Reason: "ERROR_REASON_QUOTA_EXCEEDED", Domain: "manushya.ai"},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(2200 * time.Millisecond)})
		return nil, st.Err()
	case "leaky":
		// An error that escaped the services' translation: must not reach clients.
		return nil, status.Error(codes.Internal, "pq: password authentication failed for user manushya")
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-ratelimit-remaining", "99", "x-internal-debug", "secret"))
	return &identityv1.GetIdentityResponse{Identity: &identityv1.Identity{Id: req.GetId(), ExternalId: "someone"}}, nil
}

func (f *fakeIdentity) GetMe(ctx context.Context, _ *identityv1.GetMeRequest) (*identityv1.GetMeResponse, error) {
	f.record(ctx)
	return &identityv1.GetMeResponse{Identity: &identityv1.Identity{ExternalId: "me"}}, nil
}

func (f *fakeIdentity) ListIdentities(ctx context.Context, req *identityv1.ListIdentitiesRequest) (*identityv1.ListIdentitiesResponse, error) {
	f.record(ctx)
	return &identityv1.ListIdentitiesResponse{NextPageToken: fmt.Sprintf("size=%d kind=%s", req.GetPageSize(), req.GetKind())}, nil
}

func (f *fakeIdentity) UpdateIdentity(ctx context.Context, req *identityv1.UpdateIdentityRequest) (*identityv1.UpdateIdentityResponse, error) {
	f.record(ctx)
	return &identityv1.UpdateIdentityResponse{Identity: req.GetIdentity()}, nil
}

func (f *fakeIdentity) BulkCreateIdentities(ctx context.Context, req *identityv1.BulkCreateIdentitiesRequest) (*identityv1.BulkCreateIdentitiesResponse, error) {
	f.record(ctx)
	resp := &identityv1.BulkCreateIdentitiesResponse{}
	for _, item := range req.GetIdentities() {
		resp.Results = append(resp.Results, &identityv1.BulkCreateIdentityResult{Identity: &identityv1.Identity{ExternalId: item.GetExternalId()}})
	}
	return resp, nil
}

// startUpstream serves fake on a loopback port and returns its address.
func startUpstream(tb testing.TB, fake *fakeIdentity) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	srv := grpc.NewServer()
	identityv1.RegisterIdentityServiceServer(srv, fake)
	identityv1.RegisterTenantServiceServer(srv, identityv1.UnimplementedTenantServiceServer{})
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startGateway serves a gateway with cfg (insecure credentials added) over HTTP.
func startGateway(tb testing.TB, cfg Config) (*Gateway, string) {
	tb.Helper()
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithTransportCredentials(insecure.NewCredentials()))
	g, err := New(context.Background(), cfg, testLogger(tb))
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, g.Close()) })
	srv := httptest.NewServer(g.Handler())
	tb.Cleanup(srv.Close)
	return g, srv.URL
}

type testBundle struct {
	url  string
	fake *fakeIdentity
	gw   *Gateway
}

func setup(t *testing.T) testBundle {
	t.Helper()
	fake := &fakeIdentity{}
	g, url := startGateway(t, Config{Upstreams: map[string]string{UpstreamIdentity: startUpstream(t, fake)}})
	return testBundle{url: url, fake: fake, gw: g}
}

func send(t *testing.T, method, url string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// errorBody is grpc-gateway's error shape with the details we look at.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string `json:"@type"`
		Reason          string `json:"reason"`
		Domain          string `json:"domain"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"field_violations"`
	} `json:"details"`
}

func (e errorBody) reason() string {
	for _, d := range e.Details {
		if d.Type == "type.googleapis.com/google.rpc.ErrorInfo" {
			return d.Reason
		}
	}
	return ""
}

// violation returns the first field violation's field and description.
func (e errorBody) violation() (string, string) {
	for _, d := range e.Details {
		if d.Type == "type.googleapis.com/google.rpc.BadRequest" && len(d.FieldViolations) > 0 {
			return d.FieldViolations[0].Field, d.FieldViolations[0].Description
		}
	}
	return "", ""
}

func parseError(t *testing.T, b []byte) errorBody {
	t.Helper()
	var e errorBody
	require.NoError(t, json.Unmarshal(b, &e), string(b))
	for _, d := range e.Details {
		if d.Type == "type.googleapis.com/google.rpc.ErrorInfo" {
			require.Equal(t, "manushya.ai", d.Domain)
		}
	}
	return e
}

func TestREST(t *testing.T) {
	t.Parallel()
	b := setup(t)

	type result struct {
		resp *http.Response
		body []byte
	}
	// badRequest checks a 400 with the reason and a violation naming field, whose
	// description contains desc.
	badRequest := func(reason, field, desc string) func(*testing.T, result) {
		return func(t *testing.T, r result) {
			require.Equal(t, http.StatusBadRequest, r.resp.StatusCode, string(r.body))
			e := parseError(t, r.body)
			require.Equal(t, int(codes.InvalidArgument), e.Code)
			require.Equal(t, reason, e.reason())
			gotField, gotDesc := e.violation()
			require.Equal(t, field, gotField, string(r.body))
			require.Contains(t, gotDesc, desc)
			require.Contains(t, e.Message, field)
		}
	}
	identity := func(check func(t *testing.T, id map[string]any)) func(*testing.T, result) {
		return func(t *testing.T, r result) {
			require.Equal(t, http.StatusOK, r.resp.StatusCode, string(r.body))
			require.Equal(t, "application/json", r.resp.Header.Get("Content-Type"))
			var got struct {
				Identity map[string]any `json:"identity"`
			}
			require.NoError(t, json.Unmarshal(r.body, &got))
			check(t, got.Identity)
		}
	}

	tests := []struct {
		name   string
		method string
		path   string
		body   string
		check  func(*testing.T, result)
	}{
		{
			name: "create with trailing slash", method: http.MethodPost, path: "/v1/identity/",
			body: `{"external_id":"user@example.com","role":"user","claims":{"name":"John Doe"}}`,
			check: identity(func(t *testing.T, id map[string]any) {
				require.Equal(t, "user@example.com", id["external_id"])
				require.Equal(t, map[string]any{"name": "John Doe"}, id["claims"])
				// Proto names, and unpopulated fields present for a stable shape.
				require.Contains(t, id, "create_time")
				require.Contains(t, id, "tenant_id")
				require.Equal(t, []any{}, id["roles"])
			}),
		},
		{
			name: "create without trailing slash", method: http.MethodPost, path: "/v1/identity",
			body:  `{"external_id":"a"}`,
			check: identity(func(t *testing.T, id map[string]any) { require.Equal(t, "a", id["external_id"]) }),
		},
		{
			name: "struct fields take any keys", method: http.MethodPost, path: "/v1/identity",
			body: `{"external_id":"a","claims":{"unknown_to_us":{"deep":[1,"two",null,true]},"x":1.5}}`,
			check: identity(func(t *testing.T, id map[string]any) {
				require.Equal(t, map[string]any{"unknown_to_us": map[string]any{"deep": []any{1.0, "two", nil, true}}, "x": 1.5}, id["claims"])
			}),
		},
		{
			name: "json names are accepted too", method: http.MethodPost, path: "/v1/identity",
			body:  `{"externalId":"camel"}`,
			check: identity(func(t *testing.T, id map[string]any) { require.Equal(t, "camel", id["external_id"]) }),
		},
		{
			name: "empty body is no fields", method: http.MethodPost, path: "/v1/identity",
			check: identity(func(t *testing.T, id map[string]any) { require.Empty(t, id["external_id"]) }),
		},
		{
			name: "unknown field", method: http.MethodPost, path: "/v1/identity/",
			body:  `{"external_id":"a","favourite_colour":"red"}`,
			check: badRequest("ERROR_REASON_UNKNOWN_FIELD", "favourite_colour", "unknown field"),
		},
		{
			name: "unknown field in a list element", method: http.MethodPost, path: "/v1/identity/bulk",
			body:  "{\"identities\": [\n  {\"external_id\": \"a\"},\n  {\"external_id\": \"b\", \"colour\": \"red\"}\n]}",
			check: badRequest("ERROR_REASON_UNKNOWN_FIELD", "identities[1].colour", "unknown field"),
		},
		{
			name: "malformed json", method: http.MethodPost, path: "/v1/identity",
			body:  `{"external_id":`,
			check: badRequest("ERROR_REASON_MALFORMED_REQUEST", "body", "not valid JSON"),
		},
		{
			name: "trailing data after the object", method: http.MethodPost, path: "/v1/identity",
			body:  `{"external_id":"a"} {"external_id":"b"}`,
			check: badRequest("ERROR_REASON_MALFORMED_REQUEST", "body", "not valid JSON"),
		},
		{
			name: "body is not an object", method: http.MethodPost, path: "/v1/identity",
			body:  `["a"]`,
			check: badRequest("ERROR_REASON_MALFORMED_REQUEST", "body", "expected a JSON object, got an array"),
		},
		{
			name: "wrong type", method: http.MethodPost, path: "/v1/identity",
			body:  `{"external_id": 5}`,
			check: badRequest("ERROR_REASON_MALFORMED_REQUEST", "external_id", "expected a string, got 5"),
		},
		{
			name: "wrong type under a json name", method: http.MethodPost, path: "/v1/identity",
			body:  `{"issueToken": "yes"}`,
			check: badRequest("ERROR_REASON_MALFORMED_REQUEST", "issue_token", `expected true or false, got "yes"`),
		},
		{
			name: "scalar for a list", method: http.MethodPost, path: "/v1/identity",
			body:  `{"roles": "admin"}`,
			check: badRequest("ERROR_REASON_MALFORMED_REQUEST", "roles", `expected an array, got "admin"`),
		},
		{
			name: "wrong type in a list", method: http.MethodPost, path: "/v1/identity",
			body:  `{"roles": ["admin", 7]}`,
			check: badRequest("ERROR_REASON_MALFORMED_REQUEST", "roles[1]", "expected a string, got 7"),
		},
		{
			name: "scalar for a struct", method: http.MethodPost, path: "/v1/identity",
			body:  `{"claims": "name=John"}`,
			check: badRequest("ERROR_REASON_MALFORMED_REQUEST", "claims", `expected an object, got "name=John"`),
		},
		{
			name: "invalid enum value", method: http.MethodPost, path: "/v1/identity",
			body:  `{"external_id":"a","kind":"IDENTITY_KIND_ROBOT"}`,
			check: badRequest("ERROR_REASON_INVALID_ARGUMENT", "kind", "IDENTITY_KIND_AGENT"),
		},
		{
			name: "invalid enum value in a list element", method: http.MethodPost, path: "/v1/identity/bulk",
			body:  `{"identities":[{"external_id":"a"},{"external_id":"b","kind":"ROBOT"}]}`,
			check: badRequest("ERROR_REASON_INVALID_ARGUMENT", "identities[1].kind", `got "ROBOT"`),
		},
		{
			name: "field given twice", method: http.MethodPost, path: "/v1/identity",
			body:  `{"external_id":"a","external_id":"b"}`,
			check: badRequest("ERROR_REASON_MALFORMED_REQUEST", "external_id", "more than once"),
		},
		{
			name: "bad timestamp in the query", method: http.MethodGet, path: "/v1/identity?created_after=yesterday",
			check: badRequest("ERROR_REASON_INVALID_ARGUMENT", "created_after", `expected an RFC 3339 timestamp such as "2025-01-31T12:00:00Z", got "yesterday"`),
		},
		{
			name: "body bound to a field", method: http.MethodPatch, path: "/v1/identity/0190a5f2-8c1e-7000-8000-000000000001?update_mask=role",
			body: `{"role":"admin"}`,
			check: identity(func(t *testing.T, id map[string]any) {
				require.Equal(t, "admin", id["role"])
				require.Equal(t, "0190a5f2-8c1e-7000-8000-000000000001", id["id"])
			}),
		},
		{
			name: "unknown field in a body bound to a field", method: http.MethodPut, path: "/v1/identity/0190a5f2-8c1e-7000-8000-000000000001/",
			body:  `{"role":"admin","colour":"red"}`,
			check: badRequest("ERROR_REASON_UNKNOWN_FIELD", "colour", "unknown field"),
		},
		{
			name: "query parameters", method: http.MethodGet, path: "/v1/identity/?page_size=20&kind=IDENTITY_KIND_AGENT",
			check: func(t *testing.T, r result) {
				require.Equal(t, http.StatusOK, r.resp.StatusCode, string(r.body))
				require.JSONEq(t, `{"identities":[],"next_page_token":"size=20 kind=IDENTITY_KIND_AGENT"}`, string(r.body))
			},
		},
		{
			name: "non-integer page_size", method: http.MethodGet, path: "/v1/identity?page_size=abc",
			check: badRequest("ERROR_REASON_INVALID_ARGUMENT", "page_size", `expected an integer, got "abc"`),
		},
		{
			name: "invalid enum in the query", method: http.MethodGet, path: "/v1/identity?kind=ROBOT",
			check: badRequest("ERROR_REASON_INVALID_ARGUMENT", "kind", `expected one of IDENTITY_KIND_UNSPECIFIED, IDENTITY_KIND_USER, IDENTITY_KIND_AGENT, IDENTITY_KIND_SERVICE, got "ROBOT"`),
		},
		{
			name: "invalid uuid is the service's to refuse", method: http.MethodGet, path: "/v1/identity/not-a-uuid",
			check: badRequest("ERROR_REASON_INVALID_ARGUMENT", "id", "valid UUID"),
		},
		{
			name: "literal path wins over a parameter", method: http.MethodGet, path: "/v1/identity/me/",
			check: identity(func(t *testing.T, id map[string]any) { require.Equal(t, "me", id["external_id"]) }),
		},
		{
			name: "upstream not found passes through", method: http.MethodGet, path: "/v1/identity/missing",
			check: func(t *testing.T, r result) {
				require.Equal(t, http.StatusNotFound, r.resp.StatusCode)
				e := parseError(t, r.body)
				require.Equal(t, int(codes.NotFound), e.Code)
				require.Equal(t, `identity "missing" not found`, e.Message)
				require.Equal(t, "ERROR_REASON_NOT_FOUND", e.reason())
			},
		},
		{
			name: "rate limited with retry-after metadata", method: http.MethodGet, path: "/v1/identity/limited",
			check: func(t *testing.T, r result) {
				require.Equal(t, http.StatusTooManyRequests, r.resp.StatusCode)
				require.Equal(t, "7", r.resp.Header.Get("Retry-After"))
				require.Equal(t, "100", r.resp.Header.Get("X-RateLimit-Limit"))
				require.Equal(t, "0", r.resp.Header.Get("X-RateLimit-Remaining"))
				require.Equal(t, "ERROR_REASON_RATE_LIMITED", parseError(t, r.body).reason())
			},
		},
		{
			name: "rate limited with retry info", method: http.MethodGet, path: "/v1/identity/retry-info",
			check: func(t *testing.T, r result) {
				require.Equal(t, http.StatusTooManyRequests, r.resp.StatusCode)
				require.Equal(t, "3", r.resp.Header.Get("Retry-After"))
				require.Equal(t, "ERROR_REASON_QUOTA_EXCEEDED", parseError(t, r.body).reason())
			},
		},
		{
			name: "untranslated internal errors are masked", method: http.MethodGet, path: "/v1/identity/leaky",
			check: func(t *testing.T, r result) {
				require.Equal(t, http.StatusInternalServerError, r.resp.StatusCode)
				e := parseError(t, r.body)
				require.Equal(t, "internal error", e.Message)
				require.Equal(t, "ERROR_REASON_INTERNAL", e.reason())
				require.NotContains(t, string(r.body), "password")
			},
		},
		{
			name: "only rate-limit headers leave the gateway", method: http.MethodGet, path: "/v1/identity/0190a5f2-8c1e-7000-8000-000000000001",
			check: func(t *testing.T, r result) {
				require.Equal(t, http.StatusOK, r.resp.StatusCode)
				require.Equal(t, "99", r.resp.Header.Get("X-RateLimit-Remaining"))
				for name := range r.resp.Header {
					require.NotContains(t, strings.ToLower(name), "grpc", name)
					require.NotContains(t, strings.ToLower(name), "internal", name)
				}
			},
		},
		{
			name: "unknown path", method: http.MethodGet, path: "/v1/nothing-here",
			check: func(t *testing.T, r result) {
				require.Equal(t, http.StatusNotFound, r.resp.StatusCode)
				e := parseError(t, r.body)
				require.Equal(t, int(codes.NotFound), e.Code)
				require.Equal(t, "ERROR_REASON_NOT_FOUND", e.reason())
			},
		},
		{
			name: "wrong method", method: http.MethodDelete, path: "/v1/identity/",
			check: func(t *testing.T, r result) {
				require.Equal(t, http.StatusMethodNotAllowed, r.resp.StatusCode, string(r.body))
				require.Equal(t, int(codes.Unimplemented), parseError(t, r.body).Code)
			},
		},
		{
			name: "service registered but not implemented upstream", method: http.MethodGet, path: "/v1/tenants",
			check: func(t *testing.T, r result) {
				require.Equal(t, http.StatusNotImplemented, r.resp.StatusCode)
				require.Equal(t, "ERROR_REASON_UNIMPLEMENTED", parseError(t, r.body).reason())
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			resp, respBody := send(t, tt.method, b.url+tt.path, body, nil)
			require.NotEmpty(t, resp.Header.Get(headerRequestID))
			tt.check(t, result{resp, respBody})
		})
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	fake := &fakeIdentity{}
	_, url := startGateway(t, Config{
		Upstreams:    map[string]string{UpstreamIdentity: startUpstream(t, fake)},
		MaxBodyBytes: 64,
	})
	big := `{"external_id":"` + strings.Repeat("x", 100) + `"}`
	for name, body := range map[string]io.Reader{
		"known length": strings.NewReader(big),
		// No length: the client streams it chunked and the limit trips mid-read.
		"chunked": io.MultiReader(strings.NewReader(big)),
	} {
		t.Run(name, func(t *testing.T) {
			resp, b := send(t, http.MethodPost, url+"/v1/identity", body, nil)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(b))
			e := parseError(t, b)
			require.Equal(t, "ERROR_REASON_REQUEST_TOO_LARGE", e.reason())
			field, _ := e.violation()
			require.Equal(t, "body", field)
		})
	}
	t.Run("within the limit", func(t *testing.T) {
		resp, b := send(t, http.MethodPost, url+"/v1/identity", strings.NewReader(`{"external_id":"small"}`), nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	})
}

func TestBadGrpcTimeoutHeader(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := send(t, http.MethodGet, b.url+"/v1/identity/me", nil, http.Header{"Grpc-Timeout": {"soon"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
	e := parseError(t, body)
	require.Equal(t, "ERROR_REASON_INVALID_ARGUMENT", e.reason())
	field, _ := e.violation()
	require.Equal(t, "grpc-timeout", field)
}

func TestHeadersForwarded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := send(t, http.MethodPost, b.url+"/v1/identity", strings.NewReader(`{"external_id":"a"}`), http.Header{
		"Authorization":   {"Bearer token-1"},
		"X-Api-Key":       {"mk_test_key"},
		"X-Request-Id":    {"req-123"},
		"X-Forwarded-For": {"203.0.113.9, 10.0.0.1"},
		"User-Agent":      {"manushya-test/1.0"},
	})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "req-123", resp.Header.Get(headerRequestID))

	md := b.fake.metadataFor("req-123")
	require.NotNil(t, md)
	require.Equal(t, []string{"Bearer token-1"}, md.Get("authorization"))
	require.Empty(t, md.Get("grpcgateway-authorization"), "authorization must not travel twice")
	require.Equal(t, []string{"mk_test_key"}, md.Get("x-api-key"))
	require.Equal(t, []string{"req-123"}, md.Get("x-request-id"))
	require.Equal(t, []string{"203.0.113.9"}, md.Get("x-forwarded-for"))
	require.Equal(t, []string{"manushya-test/1.0"}, md.Get("grpcgateway-user-agent"))
}

func TestClientAddressWithoutProxy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, _ := send(t, http.MethodGet, b.url+"/v1/identity/me", nil, http.Header{"X-Request-Id": {"req-direct"}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, []string{"127.0.0.1"}, b.fake.metadataFor("req-direct").Get("x-forwarded-for"))
}

func TestRequestIDGenerated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, sent := range []string{"", "has space", strings.Repeat("x", 129)} {
		resp, _ := send(t, http.MethodGet, b.url+"/v1/identity/me", nil, http.Header{"X-Request-Id": {sent}})
		require.Equal(t, http.StatusOK, resp.StatusCode)
		id := resp.Header.Get(headerRequestID)
		parsed, err := uuid.Parse(id)
		require.NoError(t, err)
		require.Equal(t, uuid.Version(7), parsed.Version())
		require.Equal(t, []string{id}, b.fake.metadataFor(id).Get("x-request-id"), "upstream saw the same id")
	}
}

func TestUpstreamDown(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close()) // nothing listens there now

	_, url := startGateway(t, Config{Upstreams: map[string]string{UpstreamIdentity: addr}})
	resp, body := send(t, http.MethodGet, url+"/v1/identity/0190a5f2-8c1e-7000-8000-000000000001", nil, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	e := parseError(t, body)
	require.Equal(t, int(codes.Unavailable), e.Code)
	require.Equal(t, "ERROR_REASON_UNAVAILABLE", e.reason())
	require.NotContains(t, string(body), addr, "transport details stay in the log")
}

func TestUnconfiguredUpstream(t *testing.T) {
	t.Parallel()
	_, url := startGateway(t, Config{})
	resp, body := send(t, http.MethodGet, url+"/v1/identity/me", nil, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	e := parseError(t, body)
	require.Equal(t, "ERROR_REASON_UNAVAILABLE", e.reason())
	require.Contains(t, e.Message, "identity service is not configured")
}

func TestNewRejectsUnknownUpstream(t *testing.T) {
	t.Parallel()
	_, err := New(context.Background(), Config{Upstreams: map[string]string{"identiy": "127.0.0.1:1"}}, testLogger(t))
	require.ErrorContains(t, err, `unknown upstream "identiy"`)
}

func TestOneConnectionPerAddress(t *testing.T) {
	t.Parallel()
	addr := startUpstream(t, &fakeIdentity{})
	g, _ := startGateway(t, Config{Upstreams: map[string]string{UpstreamIdentity: addr, UpstreamMemory: addr, UpstreamPolicy: "127.0.0.1:1"}})
	require.Len(t, g.conns, 2)
}

type fakeSso struct {
	identityv1.UnimplementedSsoServiceServer
}

func (fakeSso) StartSsoLogin(_ context.Context, req *identityv1.StartSsoLoginRequest) (*identityv1.StartSsoLoginResponse, error) {
	return &identityv1.StartSsoLoginResponse{
		AuthorizationUrl: "https://accounts.example.com/o/oauth2/auth?client_id=c&state=s-" + req.GetProvider(),
		State:            "s-" + req.GetProvider(),
	}, nil
}

func (fakeSso) SsoCallback(_ context.Context, req *identityv1.SsoCallbackRequest) (*identityv1.SsoCallbackResponse, error) {
	if req.GetState() == "app" {
		return &identityv1.SsoCallbackResponse{RedirectUrl: "https://app.example.com/sso?code=one-time", Code: "one-time"}, nil
	}
	return &identityv1.SsoCallbackResponse{Tokens: &identityv1.Tokens{AccessToken: "at", TokenType: "Bearer"}}, nil
}

func TestSsoRedirects(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	identityv1.RegisterSsoServiceServer(srv, fakeSso{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	_, url := startGateway(t, Config{Upstreams: map[string]string{UpstreamIdentity: lis.Addr().String()}})

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (*http.Response, []byte) {
		resp, err := noFollow.Get(url + path)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, b
	}

	resp, _ := get("/v1/sso/login/google")
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "https://accounts.example.com/o/oauth2/auth?client_id=c&state=s-google", resp.Header.Get("Location"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))

	resp, _ = get("/v1/sso/callback/google?code=c&state=app")
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "https://app.example.com/sso?code=one-time", resp.Header.Get("Location"))

	resp, body := get("/v1/sso/callback/google/?code=c&state=direct")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Empty(t, resp.Header.Get("Location"))
	var callback struct {
		Tokens struct {
			AccessToken string `json:"access_token"`
		} `json:"tokens"`
	}
	require.NoError(t, json.Unmarshal(body, &callback))
	require.Equal(t, "at", callback.Tokens.AccessToken)
}

type fakeAuth struct {
	identityv1.UnimplementedAuthServiceServer
}

func (fakeAuth) GetJwks(context.Context, *identityv1.GetJwksRequest) (*identityv1.GetJwksResponse, error) {
	return &identityv1.GetJwksResponse{Keys: []*identityv1.JsonWebKey{
		{Kty: "OKP", Crv: "Ed25519", X: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", Kid: "k2", Alg: "EdDSA", Use: "sig"},
		{Kty: "EC", Crv: "P-256", X: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", Y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", Kid: "k1", Alg: "ES256", Use: "sig"},
	}}, nil
}

func TestWellKnown(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	identityv1.RegisterAuthServiceServer(srv, fakeAuth{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	_, url := startGateway(t, Config{Upstreams: map[string]string{UpstreamIdentity: lis.Addr().String()}})

	resp, body := send(t, http.MethodGet, url+"/.well-known/jwks.json", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	// Only the members each key type has: no empty "y" on the Ed25519 key.
	require.JSONEq(t, `{"keys":[
		{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k2","alg":"EdDSA","use":"sig"},
		{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"k1","alg":"ES256","use":"sig"}
	]}`, string(body))

	// Paths from the identity service become URLs of the address the client used;
	// absolute URLs stay as they are; empty lists are kept.
	resp, body = send(t, http.MethodGet, url+"/.well-known/openid-configuration", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.JSONEq(t, `{"issuer":"manushya","jwks_uri":"`+url+`/.well-known/jwks.json",
		"id_token_signing_alg_values_supported":["EdDSA"],"subject_types_supported":["public"],
		"response_types_supported":[],"claims_supported":["iss","sub"],
		"login_endpoint":"`+url+`/v1/auth/login","refresh_endpoint":"https://auth.example.com/v1/sessions/refresh"}`, string(body))
}

func (fakeAuth) GetOpenIdConfiguration(context.Context, *identityv1.GetOpenIdConfigurationRequest) (*identityv1.GetOpenIdConfigurationResponse, error) { //nolint:revive // the generated interface names it
	return &identityv1.GetOpenIdConfigurationResponse{
		Issuer: "manushya", JwksUri: "/.well-known/jwks.json",
		IdTokenSigningAlgValuesSupported: []string{"EdDSA"}, SubjectTypesSupported: []string{"public"},
		ClaimsSupported: []string{"iss", "sub"}, LoginEndpoint: "/v1/auth/login",
		RefreshEndpoint: "https://auth.example.com/v1/sessions/refresh",
	}, nil
}

func TestWellKnownUpstreamErrors(t *testing.T) {
	t.Parallel()
	b := setup(t) // the fake identity service has no AuthService
	resp, body := send(t, http.MethodGet, b.url+"/.well-known/jwks.json/", nil, nil)
	require.Equal(t, http.StatusNotImplemented, resp.StatusCode, string(body))
	require.Equal(t, "ERROR_REASON_UNIMPLEMENTED", parseError(t, body).reason())
}

func TestJWKSJSONEmpty(t *testing.T) {
	t.Parallel()
	b, err := jwksJSON(nil)
	require.NoError(t, err)
	require.JSONEq(t, `{"keys":[]}`, string(b))
}
