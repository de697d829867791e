package apitest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gwruntime "github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// The fixture below is a stand-in IdentityService that exists only to test the
// harness: it answers with fixed data and echoes what reached it, so the tests can
// see that both transports deliver the same request. API tests of the real
// services use the real servers.

const (
	methodGet    = "/manushya.identity.v1.IdentityService/GetIdentity"
	methodGetMe  = "/manushya.identity.v1.IdentityService/GetMe"
	methodCreate = "/manushya.identity.v1.IdentityService/CreateIdentity"
	methodList   = "/manushya.identity.v1.IdentityService/ListIdentities"
	methodUpdate = "/manushya.identity.v1.IdentityService/UpdateIdentity"
	methodDelete = "/manushya.identity.v1.IdentityService/DeleteIdentity"

	goodKey   = "test-key"
	knownID   = "0190f5e4-7c4b-7a3e-9b1a-2f6d3c4e5a6b"
	missingID = "0190f5e4-7c4b-7a3e-9b1a-000000000000"
	takenID   = "taken@example.com"
)

var (
	uuidRE      = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	createdTime = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
)

type identityServer struct {
	identityv1.UnimplementedIdentityServiceServer
}

// fail builds a status the way Manushya services do: ErrorInfo always, BadRequest
// when a field is at fault.
func fail(code codes.Code, reason errorsv1.ErrorReason, field, msg string) error {
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason.String(), Domain: "manushya.ai"}}
	if field != "" {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: field, Description: msg},
		}})
	}
	st, err := status.New(code, msg).WithDetails(details...)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return st.Err()
}

func authenticate(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	keys := md.Get(APIKeyHeader)
	switch {
	case len(keys) == 0:
		return fail(codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING, "", "no credential")
	case keys[0] != goodKey:
		return fail(codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN, "", "unknown credential")
	}
	return nil
}

func knownIdentity() *identityv1.Identity {
	claims, _ := structpb.NewStruct(map[string]any{"name": "John Doe"})
	return &identityv1.Identity{
		Id:         knownID,
		TenantId:   "0190f5e4-0000-7000-8000-000000000001",
		ExternalId: "user@example.com",
		Kind:       identityv1.IdentityKind_IDENTITY_KIND_USER,
		Role:       "user",
		Roles:      []string{"reader"},
		Claims:     claims,
		IsActive:   true,
		CreateTime: timestamppb.New(createdTime),
	}
}

func (identityServer) GetIdentity(ctx context.Context, req *identityv1.GetIdentityRequest) (*identityv1.GetIdentityResponse, error) {
	if err := authenticate(ctx); err != nil {
		return nil, err
	}
	switch {
	case !uuidRE.MatchString(req.GetId()):
		return nil, fail(codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, "id", "value must be a valid UUID")
	case req.GetId() != knownID:
		return nil, fail(codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND, "", "identity not found")
	}
	return &identityv1.GetIdentityResponse{Identity: knownIdentity()}, nil
}

func (identityServer) CreateIdentity(ctx context.Context, req *identityv1.CreateIdentityRequest) (*identityv1.CreateIdentityResponse, error) {
	if err := authenticate(ctx); err != nil {
		return nil, err
	}
	switch req.GetExternalId() {
	case "":
		return nil, fail(codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, "external_id", "value is required")
	case takenID:
		return nil, fail(codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS, "", "external_id is taken")
	}
	resp := &identityv1.CreateIdentityResponse{Identity: &identityv1.Identity{
		Id:         missingID,
		ExternalId: req.GetExternalId(),
		Kind:       req.GetKind(),
		Role:       req.GetRole(),
		Roles:      req.GetRoles(),
		Claims:     req.GetClaims(),
		IsActive:   true,
		CreateTime: timestamppb.New(createdTime),
	}}
	if req.GetIssueToken() {
		resp.Tokens = &identityv1.Tokens{AccessToken: "access", RefreshToken: "refresh", TokenType: "Bearer", ExpiresIn: 900}
	}
	return resp, nil
}

// ListIdentities is public in the fixture and echoes its filters as the claims of
// the one identity it returns.
func (identityServer) ListIdentities(_ context.Context, req *identityv1.ListIdentitiesRequest) (*identityv1.ListIdentitiesResponse, error) {
	if req.GetPageSize() > 1000 {
		return nil, fail(codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, "page_size", "value must be at most 1000")
	}
	echo, err := structpb.NewStruct(map[string]any{
		"page_size":       float64(req.GetPageSize()),
		"page_token":      req.GetPageToken(),
		"role":            req.GetRole(),
		"kind":            req.GetKind().String(),
		"external_id":     req.GetExternalId(),
		"created_after":   req.GetCreatedAfter().AsTime().Format(time.RFC3339Nano),
		"has_after":       req.GetCreatedAfter() != nil,
		"has_before":      req.GetCreatedBefore() != nil,
		"include_deleted": req.GetIncludeDeleted(),
	})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &identityv1.ListIdentitiesResponse{
		Identities:    []*identityv1.Identity{{Id: knownID, Claims: echo}},
		NextPageToken: "next",
	}, nil
}

// UpdateIdentity echoes the identity it got, with update_mask and replace_claims
// in its claims.
func (identityServer) UpdateIdentity(ctx context.Context, req *identityv1.UpdateIdentityRequest) (*identityv1.UpdateIdentityResponse, error) {
	if err := authenticate(ctx); err != nil {
		return nil, err
	}
	if req.GetIdentity().GetId() != knownID {
		return nil, fail(codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND, "", "identity not found")
	}
	echo, err := structpb.NewStruct(map[string]any{
		"update_mask":    strings.Join(req.GetUpdateMask().GetPaths(), ","),
		"replace_claims": req.GetReplaceClaims(),
	})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	out := proto.CloneOf(req.GetIdentity())
	out.Claims = echo
	return &identityv1.UpdateIdentityResponse{Identity: out}, nil
}

// DeleteIdentity refuses hard deletes, so the tests can see that the hard query
// parameter arrived.
func (identityServer) DeleteIdentity(ctx context.Context, req *identityv1.DeleteIdentityRequest) (*identityv1.DeleteIdentityResponse, error) {
	if err := authenticate(ctx); err != nil {
		return nil, err
	}
	if req.GetHard() {
		return nil, fail(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION, "", "hard delete is off")
	}
	return &identityv1.DeleteIdentityResponse{}, nil
}

// newTarget starts the fixture over gRPC and, through grpc-gateway, over REST.
func newTarget(t *testing.T) Target {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	identityv1.RegisterIdentityServiceServer(srv, identityServer{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		require.NoError(t, <-served)
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	mux := gwruntime.NewServeMux(
		gwruntime.WithMarshalerOption(gwruntime.MIMEWildcard, &gwruntime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{},
		}),
		gwruntime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
			if strings.EqualFold(key, APIKeyHeader) {
				return APIKeyHeader, true
			}
			return gwruntime.DefaultHeaderMatcher(key)
		}),
	)
	require.NoError(t, identityv1.RegisterIdentityServiceHandlerClient(t.Context(), mux, identityv1.NewIdentityServiceClient(conn)))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	return Target{GRPC: conn, RESTBase: hs.URL}
}

func mustStruct(t testing.TB, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

func TestRun(t *testing.T) {
	t.Parallel()
	target := newTarget(t)
	reason := func(r errorsv1.ErrorReason) string { return r.String() }

	Run(t, target,
		Case{
			Name:       "get by path parameter",
			Method:     methodGet,
			Request:    &identityv1.GetIdentityRequest{Id: knownID},
			Credential: goodKey,
			Check: func(t testing.TB, resp proto.Message) {
				got := As[*identityv1.GetIdentityResponse](t, resp)
				require.True(t, proto.Equal(knownIdentity(), got.GetIdentity()), "got %v", got.GetIdentity())
			},
		},
		Case{
			Name:    "credential in headers",
			Method:  methodGet,
			Request: &identityv1.GetIdentityRequest{Id: knownID},
			Headers: map[string]string{"X-Api-Key": goodKey},
		},
		Case{
			Name:       "not found carries its reason",
			Method:     methodGet,
			Request:    &identityv1.GetIdentityRequest{Id: missingID},
			Credential: goodKey,
			WantCode:   codes.NotFound,
			WantReason: reason(errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND),
			CheckStatus: func(t testing.TB, st *status.Status) {
				require.Equal(t, "identity not found", st.Message())
				require.Equal(t, "manushya.ai", ErrorInfo(st).GetDomain())
			},
		},
		Case{
			Name:       "bad id names the field",
			Method:     methodGet,
			Request:    &identityv1.GetIdentityRequest{Id: "not-a-uuid"},
			Credential: goodKey,
			WantCode:   codes.InvalidArgument,
			WantReason: reason(errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT),
			WantField:  "id",
		},
		Case{
			Name:       "no credential",
			Method:     methodGet,
			Request:    &identityv1.GetIdentityRequest{Id: knownID},
			WantCode:   codes.Unauthenticated,
			WantReason: reason(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING),
		},
		Case{
			Name:       "unknown credential",
			Method:     methodGet,
			Request:    &identityv1.GetIdentityRequest{Id: knownID},
			Credential: "wrong",
			WantCode:   codes.Unauthenticated,
			WantReason: reason(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN),
		},
		Case{
			Name:       "nil request is an empty one",
			Method:     methodGetMe,
			Credential: goodKey,
			WantCode:   codes.Unimplemented,
		},
		Case{
			Name:   "create with the whole message as body",
			Method: methodCreate,
			Request: &identityv1.CreateIdentityRequest{
				ExternalId: "agent-7",
				Role:       "agent",
				Kind:       identityv1.IdentityKind_IDENTITY_KIND_AGENT,
				Roles:      []string{"reader", "writer"},
				Claims:     mustStruct(t, map[string]any{"name": "Agent Seven", "team": map[string]any{"size": 3.0}}),
				IssueToken: true,
			},
			Credential: goodKey,
			Check: func(t testing.TB, resp proto.Message) {
				got := As[*identityv1.CreateIdentityResponse](t, resp)
				id := got.GetIdentity()
				require.Equal(t, "agent-7", id.GetExternalId())
				require.Equal(t, "agent", id.GetRole())
				require.Equal(t, identityv1.IdentityKind_IDENTITY_KIND_AGENT, id.GetKind())
				require.Equal(t, []string{"reader", "writer"}, id.GetRoles())
				require.Equal(t, map[string]any{"name": "Agent Seven", "team": map[string]any{"size": 3.0}}, id.GetClaims().AsMap())
				require.Equal(t, "Bearer", got.GetTokens().GetTokenType())
			},
		},
		Case{
			Name:   "a fresh request per transport",
			Method: methodCreate,
			NewRequest: func(tr Transport) proto.Message {
				return &identityv1.CreateIdentityRequest{ExternalId: "user-over-" + string(tr)}
			},
			Credential: goodKey,
			Check: func(t testing.TB, resp proto.Message) {
				ext := As[*identityv1.CreateIdentityResponse](t, resp).GetIdentity().GetExternalId()
				require.Contains(t, []string{"user-over-grpc", "user-over-rest"}, ext)
			},
		},
		Case{
			Name:       "create without external_id names the field",
			Method:     methodCreate,
			Request:    &identityv1.CreateIdentityRequest{Role: "user"},
			Credential: goodKey,
			WantCode:   codes.InvalidArgument,
			WantField:  "external_id",
		},
		Case{
			Name:       "create a taken external_id",
			Method:     methodCreate,
			Request:    &identityv1.CreateIdentityRequest{ExternalId: takenID},
			Credential: goodKey,
			WantCode:   codes.AlreadyExists,
			WantReason: reason(errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS),
		},
		Case{
			Name:   "list with query parameters",
			Method: methodList,
			Request: &identityv1.ListIdentitiesRequest{
				PageSize:       25,
				PageToken:      "tok/en+1=",
				Role:           "agent",
				Kind:           identityv1.IdentityKind_IDENTITY_KIND_AGENT,
				ExternalId:     "a b&c",
				CreatedAfter:   timestamppb.New(createdTime.Add(1500 * time.Millisecond)),
				IncludeDeleted: true,
			},
			Check: func(t testing.TB, resp proto.Message) {
				got := As[*identityv1.ListIdentitiesResponse](t, resp)
				require.Len(t, got.GetIdentities(), 1)
				require.Equal(t, map[string]any{
					"page_size":       25.0,
					"page_token":      "tok/en+1=",
					"role":            "agent",
					"kind":            "IDENTITY_KIND_AGENT",
					"external_id":     "a b&c",
					"created_after":   "2024-05-01T10:00:01.5Z",
					"has_after":       true,
					"has_before":      false,
					"include_deleted": true,
				}, got.GetIdentities()[0].GetClaims().AsMap())
				require.Equal(t, "next", got.GetNextPageToken())
			},
		},
		Case{
			Name:       "list with a bad page_size names the field",
			Method:     methodList,
			Request:    &identityv1.ListIdentitiesRequest{PageSize: 5000},
			WantCode:   codes.InvalidArgument,
			WantReason: reason(errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT),
			WantField:  "page_size",
		},
		Case{
			Name:   "update with a nested path parameter and a field body",
			Method: methodUpdate,
			Request: &identityv1.UpdateIdentityRequest{
				Identity:      &identityv1.Identity{Id: knownID, Role: "admin", Roles: []string{"ops"}},
				UpdateMask:    &fieldmaskpb.FieldMask{Paths: []string{"role", "roles"}},
				ReplaceClaims: true,
			},
			Credential: goodKey,
			Check: func(t testing.TB, resp proto.Message) {
				id := As[*identityv1.UpdateIdentityResponse](t, resp).GetIdentity()
				require.Equal(t, knownID, id.GetId())
				require.Equal(t, "admin", id.GetRole())
				require.Equal(t, []string{"ops"}, id.GetRoles())
				require.Equal(t, map[string]any{"update_mask": "role,roles", "replace_claims": true}, id.GetClaims().AsMap())
			},
		},
		Case{
			Name:       "delete answers an empty message",
			Method:     methodDelete,
			Request:    &identityv1.DeleteIdentityRequest{Id: knownID},
			Credential: goodKey,
			Check: func(t testing.TB, resp proto.Message) {
				require.True(t, proto.Equal(&identityv1.DeleteIdentityResponse{}, resp))
			},
		},
		Case{
			Name:       "delete with a bool query parameter",
			Method:     methodDelete,
			Request:    &identityv1.DeleteIdentityRequest{Id: knownID, Hard: true},
			Credential: goodKey,
			WantCode:   codes.FailedPrecondition,
			WantReason: reason(errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION),
		},
	)
}

func TestRunRaw(t *testing.T) {
	t.Parallel()
	target := newTarget(t)

	RunRaw(t, target,
		RawCase{
			Name:       "malformed JSON",
			HTTPMethod: http.MethodPost,
			Path:       "/v1/identity",
			Body:       `{"external_id":`,
			Credential: goodKey,
			WantStatus: http.StatusBadRequest,
			Check: func(t testing.TB, _ int, body []byte) {
				var st struct {
					Code int `json:"code"`
				}
				require.NoError(t, json.Unmarshal(body, &st))
				require.Equal(t, int(codes.InvalidArgument), st.Code)
			},
		},
		RawCase{
			Name:       "unknown field",
			HTTPMethod: http.MethodPost,
			Path:       "/v1/identity",
			Body:       `{"external_id":"x","favourite_colour":"blue"}`,
			Credential: goodKey,
			WantStatus: http.StatusBadRequest,
			Check: func(t testing.TB, _ int, body []byte) {
				require.Contains(t, string(body), "favourite_colour")
			},
		},
		RawCase{
			Name:       "snake_case payload as documented",
			HTTPMethod: http.MethodPost,
			Path:       "/v1/identity",
			Body:       `{"external_id":"user@example.com","role":"user","claims":{"name":"John Doe"}}`,
			Credential: goodKey,
			WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				require.Contains(t, string(body), `"external_id":"user@example.com"`)
				require.Contains(t, string(body), `"is_active":true`)
			},
		},
		RawCase{
			Name:       "error reason and field from the body",
			Path:       "/v1/identity?page_size=5000",
			WantStatus: http.StatusBadRequest,
			WantReason: errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT.String(),
			WantField:  "page_size",
		},
		RawCase{
			Name:       "query parameter of the wrong type",
			Path:       "/v1/identity?page_size=many",
			WantStatus: http.StatusBadRequest,
		},
		RawCase{
			Name:       "not found over a raw path",
			Path:       "/v1/identity/" + missingID,
			Headers:    map[string]string{"X-API-Key": goodKey},
			WantStatus: http.StatusNotFound,
			WantReason: errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND.String(),
		},
		RawCase{
			Name:       "unknown route",
			Path:       "/v1/nothing-here",
			WantStatus: http.StatusNotFound,
		},
	)
}

// TestSameResponseBothWays calls the exported single-call functions and compares
// the answers.
func TestSameResponseBothWays(t *testing.T) {
	t.Parallel()
	target := newTarget(t)
	c := Case{Name: "get", Method: methodGet, Request: &identityv1.GetIdentityRequest{Id: knownID}, Credential: goodKey}

	viaGRPC, err := CallGRPC(t.Context(), target.GRPC, c)
	require.NoError(t, err)
	viaREST, restErr, code, err := CallREST(t.Context(), target, c)
	require.NoError(t, err)
	require.Nil(t, restErr)
	require.Equal(t, http.StatusOK, code)
	require.IsType(t, &identityv1.GetIdentityResponse{}, viaGRPC)
	require.IsType(t, viaGRPC, viaREST)
	require.True(t, proto.Equal(viaGRPC, viaREST), "gRPC %v\nREST %v", viaGRPC, viaREST)

	c.Request = &identityv1.GetIdentityRequest{Id: missingID}
	_, err = CallGRPC(t.Context(), target.GRPC, c)
	require.Equal(t, codes.NotFound, status.Code(err))
	_, restErr, code, err = CallREST(t.Context(), target, c)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, codes.NotFound, status.Code(restErr))
	require.True(t, proto.Equal(status.Convert(restErr).Proto(), restErr.Status))
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND.String(), ErrorInfo(restErr.GRPCStatus()).GetReason())
}

// TestBuildRequest pins the HTTP requests the harness sends.
func TestBuildRequest(t *testing.T) {
	t.Parallel()
	created := timestamppb.New(createdTime)

	tests := []struct {
		name     string
		method   string
		req      proto.Message
		wantVerb string
		wantURL  string
		wantBody string // JSON, compared semantically; empty means no body
	}{
		{
			name:     "path parameter",
			method:   methodGet,
			req:      &identityv1.GetIdentityRequest{Id: knownID},
			wantVerb: http.MethodGet,
			wantURL:  "http://api.test/v1/identity/" + knownID,
		},
		{
			name:     "path parameter is escaped as one segment",
			method:   methodGet,
			req:      &identityv1.GetIdentityRequest{Id: "a/b c"},
			wantVerb: http.MethodGet,
			wantURL:  "http://api.test/v1/identity/a%2Fb%20c",
		},
		{
			name:   "query parameters",
			method: methodList,
			req: &identityv1.ListIdentitiesRequest{
				PageSize:       25,
				Role:           "agent",
				Kind:           identityv1.IdentityKind_IDENTITY_KIND_AGENT,
				CreatedAfter:   created,
				CreatedBefore:  &timestamppb.Timestamp{},
				IncludeDeleted: true,
			},
			wantVerb: http.MethodGet,
			wantURL: "http://api.test/v1/identity?created_after=2024-05-01T10%3A00%3A00Z&created_before=1970-01-01T00%3A00%3A00Z" +
				"&include_deleted=true&kind=IDENTITY_KIND_AGENT&page_size=25&role=agent",
		},
		{
			name:     "no query for unset fields",
			method:   methodList,
			req:      &identityv1.ListIdentitiesRequest{},
			wantVerb: http.MethodGet,
			wantURL:  "http://api.test/v1/identity",
		},
		{
			name:   "whole message as body",
			method: methodCreate,
			req: &identityv1.CreateIdentityRequest{
				ExternalId: "user@example.com",
				Role:       "user",
				Kind:       identityv1.IdentityKind_IDENTITY_KIND_SERVICE,
				Claims:     mustStruct(t, map[string]any{"name": "John Doe"}),
				IssueToken: true,
			},
			wantVerb: http.MethodPost,
			wantURL:  "http://api.test/v1/identity",
			wantBody: `{"external_id":"user@example.com","role":"user","kind":"IDENTITY_KIND_SERVICE","claims":{"name":"John Doe"},"issue_token":true}`,
		},
		{
			name:   "field body, nested path parameter, the rest as query",
			method: methodUpdate,
			req: &identityv1.UpdateIdentityRequest{
				Identity:      &identityv1.Identity{Id: knownID, ExternalId: "x@example.com", IsActive: true, UpdateTime: created},
				UpdateMask:    &fieldmaskpb.FieldMask{Paths: []string{"external_id", "is_active"}},
				ReplaceClaims: true,
			},
			wantVerb: http.MethodPatch,
			wantURL:  "http://api.test/v1/identity/" + knownID + "?replace_claims=true&update_mask=external_id%2Cis_active",
			wantBody: `{"external_id":"x@example.com","is_active":true,"update_time":"2024-05-01T10:00:00Z"}`,
		},
		{
			name:     "unset body field is an empty object",
			method:   methodUpdate,
			req:      &identityv1.UpdateIdentityRequest{Identity: &identityv1.Identity{Id: knownID}},
			wantVerb: http.MethodPatch,
			wantURL:  "http://api.test/v1/identity/" + knownID,
			wantBody: `{}`,
		},
		{
			name:     "delete with a query flag",
			method:   methodDelete,
			req:      &identityv1.DeleteIdentityRequest{Id: knownID, Hard: true},
			wantVerb: http.MethodDelete,
			wantURL:  "http://api.test/v1/identity/" + knownID + "?hard=true",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := lookupMethod(tc.method)
			require.NoError(t, err)
			rule, err := httpRule(m.desc)
			require.NoError(t, err)
			before := proto.Clone(tc.req)

			hreq, err := newHTTPRequest(t.Context(), "http://api.test/", rule, tc.req)
			require.NoError(t, err)
			require.Equal(t, tc.wantVerb, hreq.Method)
			require.Equal(t, tc.wantURL, hreq.URL.String())
			require.True(t, proto.Equal(before, tc.req), "the request was modified")
			if tc.wantBody == "" {
				require.Nil(t, hreq.Body)
				return
			}
			require.Equal(t, "application/json", hreq.Header.Get("Content-Type"))
			body, err := io.ReadAll(hreq.Body)
			require.NoError(t, err)
			require.JSONEq(t, tc.wantBody, string(body))
		})
	}
}

func TestExpandTemplate(t *testing.T) {
	t.Parallel()
	values := map[string]string{
		"id":          "a/b",
		"parent":      "tenants/t1/things/x y",
		"file":        "files/dir/sub/f.txt",
		"thing.id":    "42",
		"empty":       "",
		"nested.name": "tenants/t1",
	}
	lookup := func(field string) (string, error) {
		v, ok := values[field]
		if !ok {
			return "", fmt.Errorf("no field %s", field)
		}
		return v, nil
	}

	tests := []struct {
		tmpl       string
		want       string
		wantFields []string
		wantErr    string
	}{
		{tmpl: "/v1/things/{id}", want: "/v1/things/a%2Fb", wantFields: []string{"id"}},
		{tmpl: "/v1/things/{thing.id}:cancel", want: "/v1/things/42:cancel", wantFields: []string{"thing.id"}},
		{tmpl: "/v1/{parent=tenants/*/things/*}/parts", want: "/v1/tenants/t1/things/x%20y/parts", wantFields: []string{"parent"}},
		{tmpl: "/v1/{file=files/**}", want: "/v1/files/dir/sub/f.txt", wantFields: []string{"file"}},
		{tmpl: "/v1/{nested.name=tenants/*}/{thing.id}", want: "/v1/tenants/t1/42", wantFields: []string{"nested.name", "thing.id"}},
		{tmpl: "/v1/static", want: "/v1/static"},
		{tmpl: "/v1/{parent=tenants/*}", wantErr: `does not match the pattern "tenants/*"`},
		{tmpl: "/v1/{file=dirs/**}", wantErr: "does not match"},
		{tmpl: "/v1/things/{empty}", wantErr: "path parameter empty is empty"},
		{tmpl: "/v1/things/{missing}", wantErr: "no field missing"},
		{tmpl: "/v1/things/{id", wantErr: "unclosed"},
	}
	for _, tc := range tests {
		got, fields, err := expandTemplate(tc.tmpl, lookup)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.tmpl)
			continue
		}
		require.NoError(t, err, tc.tmpl)
		require.Equal(t, tc.want, got, tc.tmpl)
		require.Equal(t, tc.wantFields, fields, tc.tmpl)
	}
}

func TestQueryValues(t *testing.T) {
	t.Parallel()

	t.Run("repeated and nested fields", func(t *testing.T) {
		t.Parallel()
		q := map[string][]string{}
		req := &identityv1.UpdateIdentityRequest{Identity: &identityv1.Identity{Role: "admin", Roles: []string{"a", "b"}, Kind: identityv1.IdentityKind(99)}}
		require.NoError(t, queryValues(req.ProtoReflect(), "", nil, q))
		require.Equal(t, map[string][]string{
			"identity.role":  {"admin"},
			"identity.roles": {"a", "b"},
			"identity.kind":  {"99"},
		}, q)
	})

	t.Run("Struct cannot be a query parameter", func(t *testing.T) {
		t.Parallel()
		req := &identityv1.CreateIdentityRequest{ExternalId: "x", Claims: mustStruct(t, map[string]any{"a": 1.0})}
		err := queryValues(req.ProtoReflect(), "", nil, map[string][]string{})
		require.ErrorContains(t, err, "query parameter claims")
		require.ErrorContains(t, err, "google.protobuf.Struct")
	})

	t.Run("Struct in a case fails clearly", func(t *testing.T) {
		t.Parallel()
		// No Manushya method takes a Struct outside its body, so the rule of
		// CreateIdentity is changed to send everything as query parameters.
		m, err := lookupMethod(methodCreate)
		require.NoError(t, err)
		rule, err := httpRule(m.desc)
		require.NoError(t, err)
		rule = proto.CloneOf(rule)
		rule.Body = ""
		_, err = newHTTPRequest(t.Context(), "http://api.test", rule, &identityv1.CreateIdentityRequest{Claims: mustStruct(t, map[string]any{})})
		require.ErrorContains(t, err, "google.protobuf.Struct")
	})
}

func TestCaseErrors(t *testing.T) {
	t.Parallel()
	target := Target{RESTBase: "http://127.0.0.1:1"}

	tests := []struct {
		name    string
		c       Case
		wantErr string
	}{
		{"malformed method", Case{Method: "GetIdentity"}, "not of the form"},
		{"unknown service", Case{Method: "/manushya.nothing.v1.NoService/Get"}, "is not registered"},
		{"unknown method", Case{Method: "/manushya.identity.v1.IdentityService/Frobnicate"}, "has no method Frobnicate"},
		{"wrong request type", Case{Method: methodGet, Request: &identityv1.GetMeRequest{}}, "takes a manushya.identity.v1.GetIdentityRequest"},
		{"empty path parameter", Case{Method: methodGet, Request: &identityv1.GetIdentityRequest{}}, "path parameter id is empty"},
	}
	for _, tc := range tests {
		_, _, _, err := CallREST(t.Context(), target, tc.c)
		require.ErrorContains(t, err, tc.wantErr, tc.name)
		if tc.name == "empty path parameter" {
			continue // a gRPC-only problem does not exist
		}
		_, err = CallGRPC(t.Context(), nil, tc.c)
		require.ErrorContains(t, err, tc.wantErr, tc.name)
	}
}

// recorder is a testing.TB that records failures instead of reporting them, to
// prove that the harness fails when it should.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msgs   []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}
func (r *recorder) Error(args ...any)                 { r.Errorf("%s", fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...); runtime.Goexit() }
func (r *recorder) Fatal(args ...any)                 { r.Error(args...); runtime.Goexit() }
func (r *recorder) FailNow()                          { r.Fail(); runtime.Goexit() }
func (r *recorder) Fail()                             { r.mu.Lock(); r.failed = true; r.mu.Unlock() }
func (r *recorder) Failed() bool                      { r.mu.Lock(); defer r.mu.Unlock(); return r.failed }

// failure runs fn against a recorder on its own goroutine (FailNow ends it) and
// returns what it reported; the test fails if fn passed.
func failure(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(rec)
	}()
	<-done
	require.True(t, rec.Failed(), "the harness accepted a wrong outcome")
	return strings.Join(rec.msgs, "\n")
}

func TestHarnessFails(t *testing.T) {
	t.Parallel()
	target := newTarget(t)
	missing := Case{Name: "missing", Method: methodGet, Request: &identityv1.GetIdentityRequest{Id: missingID}, Credential: goodKey}
	found := Case{Name: "found", Method: methodGet, Request: &identityv1.GetIdentityRequest{Id: knownID}, Credential: goodKey}
	badID := Case{Name: "bad id", Method: methodGet, Request: &identityv1.GetIdentityRequest{Id: "x"}, Credential: goodKey}

	both := func(c Case) (func(tb testing.TB, want Case), func(tb testing.TB, want Case)) {
		resp, rpcErr, err := callGRPC(t.Context(), target.GRPC, c)
		require.NoError(t, err)
		rresp, restErr, code, err := CallREST(t.Context(), target, c)
		require.NoError(t, err)
		return func(tb testing.TB, want Case) { verifyGRPC(tb, want, resp, rpcErr) },
			func(tb testing.TB, want Case) { verifyREST(tb, want, rresp, restErr, code) }
	}
	missingGRPC, missingREST := both(missing)
	foundGRPC, foundREST := both(found)
	badGRPC, badREST := both(badID)

	wrong := []struct {
		name   string
		verify [2]func(tb testing.TB, want Case)
		want   Case
		msg    string
	}{
		{"error where OK was wanted", [2]func(testing.TB, Case){missingGRPC, missingREST}, missing, ""},
		{"wrong code", [2]func(testing.TB, Case){missingGRPC, missingREST}, withWant(missing, codes.PermissionDenied, "", ""), ""},
		{"wrong reason", [2]func(testing.TB, Case){missingGRPC, missingREST}, withWant(missing, codes.NotFound, "ERROR_REASON_GONE", ""), "ErrorInfo reason"},
		{"no violation", [2]func(testing.TB, Case){missingGRPC, missingREST}, withWant(missing, codes.NotFound, "", "id"), "BadRequest field violations"},
		{"another field", [2]func(testing.TB, Case){badGRPC, badREST}, withWant(badID, codes.InvalidArgument, "", "external_id"), "BadRequest field violations"},
		{"OK where an error was wanted", [2]func(testing.TB, Case){foundGRPC, foundREST}, withWant(found, codes.NotFound, "", ""), ""},
		{"Check fails", [2]func(testing.TB, Case){foundGRPC, foundREST}, withCheck(found), "check ran"},
	}
	for _, tc := range wrong {
		for i, verify := range tc.verify {
			msg := failure(t, func(tb testing.TB) { verify(tb, tc.want) })
			require.Contains(t, msg, tc.msg, "%s (%s)", tc.name, [2]string{"grpc", "rest"}[i])
		}
	}

	// And the right expectations pass.
	right := withWant(missing, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND.String(), "")
	for _, verify := range []func(testing.TB, Case){missingGRPC, missingREST} {
		rec := &recorder{TB: t}
		verify(rec, right)
		require.False(t, rec.Failed(), rec.msgs)
	}

	rawMsg := failure(t, func(tb testing.TB) {
		verifyRaw(tb, RawCase{WantStatus: http.StatusNotFound, WantReason: "ERROR_REASON_GONE"}, http.StatusNotFound, nil,
			[]byte(`{"code":5,"message":"x","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ERROR_REASON_NOT_FOUND"}]}`))
	})
	require.Contains(t, rawMsg, "ErrorInfo reason")
	failure(t, func(tb testing.TB) {
		verifyRaw(tb, RawCase{WantStatus: http.StatusOK}, http.StatusNotFound, nil, []byte(`{}`))
	})
}

func withWant(c Case, code codes.Code, reason, field string) Case {
	c.WantCode, c.WantReason, c.WantField = code, reason, field
	return c
}

func withCheck(c Case) Case {
	c.Check = func(t testing.TB, _ proto.Message) { t.Errorf("check ran") }
	return c
}
