package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/bus"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

const (
	createIdentity = "/manushya.identity.v1.IdentityService/CreateIdentity"
	getIdentity    = "/manushya.identity.v1.IdentityService/GetIdentity"
	listIdentities = "/manushya.identity.v1.IdentityService/ListIdentities"
	getMe          = "/manushya.identity.v1.IdentityService/GetMe"
	createTenant   = "/manushya.identity.v1.TenantService/CreateTenant"
	listTenants    = "/manushya.identity.v1.TenantService/ListTenants"
)

// TestAPI runs the slice's cases over gRPC and REST against one all-in-one process.
func TestAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all")
	ctx := context.Background()
	svc := a.Identity().Service()
	tenantA, err := svc.Bootstrap(ctx, "tenant-a", "Tenant A")
	require.NoError(t, err)
	tenantB, err := svc.Bootstrap(ctx, "tenant-b", "Tenant B")
	require.NoError(t, err)
	admin := tenantA.APIKey

	// A readonly identity with a read-scoped key, to check what it may not do.
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	resp, err := apitest.CallGRPC(ctx, tgt.GRPC, apitest.Case{Method: createIdentity, Credential: admin,
		Request: &identityv1.CreateIdentityRequest{ExternalId: "auditor", Role: "readonly"}})
	require.NoError(t, err)
	reader := resp.(*identityv1.CreateIdentityResponse).GetIdentity()
	readerKey, err := svc.IssueAPIKey(ctx, tenantA.TenantID, reader.GetId(), "reader", []string{"read"}, nil)
	require.NoError(t, err)

	// An identity of tenant B, which tenant A must never see.
	resp, err = apitest.CallGRPC(ctx, tgt.GRPC, apitest.Case{Method: createIdentity, Credential: tenantB.APIKey,
		Request: &identityv1.CreateIdentityRequest{ExternalId: "b-secret"}})
	require.NoError(t, err)
	foreign := resp.(*identityv1.CreateIdentityResponse).GetIdentity()

	claims, _ := structpb.NewStruct(map[string]any{"name": "John Doe"})
	apitest.Run(t, tgt,
		apitest.Case{
			Name: "create identity", Method: createIdentity, Credential: admin,
			NewRequest: func(tr apitest.Transport) proto.Message {
				return &identityv1.CreateIdentityRequest{ExternalId: "user-" + string(tr) + "@example.com", Role: "user", Claims: claims}
			},
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				ident := apitest.As[*identityv1.CreateIdentityResponse](t, resp).GetIdentity()
				require.Equal(t, tenantA.TenantID, ident.GetTenantId())
				require.Equal(t, "John Doe", ident.GetClaims().GetFields()["name"].GetStringValue())
				require.True(t, ident.GetIsActive())
			},
		},
		apitest.Case{
			Name: "get own tenant's identity", Method: getIdentity, Credential: admin,
			Request: &identityv1.GetIdentityRequest{Id: reader.GetId()}, WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				require.Equal(t, "auditor", apitest.As[*identityv1.GetIdentityResponse](t, resp).GetIdentity().GetExternalId())
			},
		},
		apitest.Case{
			Name: "another tenant's identity is not found", Method: getIdentity, Credential: admin,
			Request:  &identityv1.GetIdentityRequest{Id: foreign.GetId()},
			WantCode: codes.NotFound, WantReason: "ERROR_REASON_NOT_FOUND",
		},
		apitest.Case{
			Name: "list sees only own tenant", Method: listIdentities, Credential: admin,
			Request: &identityv1.ListIdentitiesRequest{PageSize: 1000}, WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				for _, i := range apitest.As[*identityv1.ListIdentitiesResponse](t, resp).GetIdentities() {
					require.Equal(t, tenantA.TenantID, i.GetTenantId())
				}
			},
		},
		apitest.Case{
			Name: "me", Method: getMe, Credential: readerKey, WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				require.Equal(t, reader.GetId(), apitest.As[*identityv1.GetMeResponse](t, resp).GetIdentity().GetId())
			},
		},
		apitest.Case{
			Name: "no credential", Method: listIdentities, Request: &identityv1.ListIdentitiesRequest{},
			WantCode: codes.Unauthenticated, WantReason: "ERROR_REASON_CREDENTIALS_MISSING",
		},
		apitest.Case{
			Name: "unknown key", Method: listIdentities, Credential: "mk_live_0000000000000000000000000000000000000000",
			Request: &identityv1.ListIdentitiesRequest{}, WantCode: codes.Unauthenticated, WantReason: "ERROR_REASON_CREDENTIALS_UNKNOWN",
		},
		apitest.Case{
			Name: "invalid uuid names the field", Method: getIdentity, Credential: admin,
			Request:  &identityv1.GetIdentityRequest{Id: "not-a-uuid"},
			WantCode: codes.InvalidArgument, WantReason: "ERROR_REASON_INVALID_ARGUMENT", WantField: "id",
		},
		apitest.Case{
			Name: "missing external_id names the field", Method: createIdentity, Credential: admin,
			Request:  &identityv1.CreateIdentityRequest{Role: "user"},
			WantCode: codes.InvalidArgument, WantField: "external_id",
		},
		apitest.Case{
			Name: "page size above the cap", Method: listIdentities, Credential: admin,
			Request:  &identityv1.ListIdentitiesRequest{PageSize: 5000},
			WantCode: codes.InvalidArgument, WantField: "page_size",
		},
		apitest.Case{
			Name: "readonly cannot create", Method: createIdentity, Credential: readerKey,
			Request:  &identityv1.CreateIdentityRequest{ExternalId: "nope"},
			WantCode: codes.PermissionDenied, WantReason: "ERROR_REASON_PERMISSION_DENIED",
		},
		apitest.Case{
			Name: "readonly key cannot list tenants", Method: listTenants, Credential: readerKey,
			Request: &identityv1.ListTenantsRequest{}, WantCode: codes.PermissionDenied,
		},
		apitest.Case{
			Name: "operator creates tenants", Method: createTenant, Credential: admin,
			NewRequest: func(tr apitest.Transport) proto.Message {
				return &identityv1.CreateTenantRequest{Slug: "acme-" + string(tr), Name: "Acme"}
			},
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				require.NotEmpty(t, apitest.As[*identityv1.CreateTenantResponse](t, resp).GetTenant().GetId())
			},
		},
		apitest.Case{
			// Single sign-on: an admin lists the tenant's providers (none yet).
			Name: "sso providers list", Method: "/manushya.identity.v1.SsoService/ListSsoProviders", Credential: admin,
			Request: &identityv1.ListSsoProvidersRequest{}, WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				require.Empty(t, apitest.As[*identityv1.ListSsoProvidersResponse](t, resp).GetSsoProviders())
			},
		},
	)

	big := `{"external_id":"big","claims":{"pad":"` + strings.Repeat("x", 1<<20) + `"}}`
	apitest.RunRaw(t, tgt,
		apitest.RawCase{
			Name: "contract payload with trailing slash", HTTPMethod: http.MethodPost, Path: "/v1/identity/", Credential: admin,
			Body:       `{"external_id":"user@example.com","role":"user","claims":{"name":"John Doe"}}`,
			WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				var got map[string]map[string]any
				require.NoError(t, json.Unmarshal(body, &got))
				require.Equal(t, "user@example.com", got["identity"]["external_id"], "REST uses proto field names")
				require.Equal(t, "IDENTITY_KIND_USER", got["identity"]["kind"])
			},
		},
		apitest.RawCase{
			Name: "list with trailing slash", HTTPMethod: http.MethodGet, Path: "/v1/identity/?page_size=2", Credential: admin,
			WantStatus: http.StatusOK,
		},
		apitest.RawCase{
			Name: "unknown field", HTTPMethod: http.MethodPost, Path: "/v1/identity", Credential: admin,
			Body: `{"external_id":"x","favourite_colour":"blue"}`, WantStatus: http.StatusBadRequest,
			WantReason: "ERROR_REASON_UNKNOWN_FIELD", WantField: "favourite_colour",
		},
		apitest.RawCase{
			Name: "malformed json", HTTPMethod: http.MethodPost, Path: "/v1/identity", Credential: admin,
			Body: `{"external_id":`, WantStatus: http.StatusBadRequest, WantReason: "ERROR_REASON_MALFORMED_REQUEST",
		},
		apitest.RawCase{
			Name: "wrong type names the field", HTTPMethod: http.MethodPost, Path: "/v1/identity", Credential: admin,
			Body: `{"external_id":42}`, WantStatus: http.StatusBadRequest, WantField: "external_id",
		},
		apitest.RawCase{
			Name: "invalid enum names the field", HTTPMethod: http.MethodPost, Path: "/v1/identity", Credential: admin,
			Body: `{"external_id":"e","kind":"IDENTITY_KIND_ROBOT"}`, WantStatus: http.StatusBadRequest, WantField: "kind",
		},
		apitest.RawCase{
			Name: "oversize body", HTTPMethod: http.MethodPost, Path: "/v1/identity", Credential: admin,
			Body: big, WantStatus: http.StatusBadRequest, WantReason: "ERROR_REASON_REQUEST_TOO_LARGE",
		},
		apitest.RawCase{
			Name: "invalid uuid in path", HTTPMethod: http.MethodGet, Path: "/v1/identity/12345", Credential: admin,
			WantStatus: http.StatusBadRequest, WantField: "id",
		},
		apitest.RawCase{
			Name: "non-integer page size", HTTPMethod: http.MethodGet, Path: "/v1/identity?page_size=ten", Credential: admin,
			WantStatus: http.StatusBadRequest, WantField: "page_size",
		},
		apitest.RawCase{
			Name: "no credential is 401", HTTPMethod: http.MethodGet, Path: "/v1/identity", WantStatus: http.StatusUnauthorized,
		},
		apitest.RawCase{
			Name: "unknown path is 404", HTTPMethod: http.MethodGet, Path: "/v1/nothing-here", Credential: admin,
			WantStatus: http.StatusNotFound,
		},
	)
}

// TestOperationalEndpoints checks health, readiness, metrics and the API documents.
func TestOperationalEndpoints(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all")
	base := "http://" + a.HTTPAddr()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, _ := get("/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get("/readyz")
	require.Equal(t, http.StatusOK, code)
	code, body := get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "grpc_server_started_total")

	code, body = get("/v1/openapi.json")
	require.Equal(t, http.StatusOK, code)
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &doc))
	for _, p := range contractPaths {
		require.Contains(t, doc.Paths, p, "openapi.json lacks %s", p)
	}

	code, body = get("/v1/docs")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, strings.ToLower(body), "<html")
	require.NotContains(t, body, "https://", "the docs page loads nothing from the internet")
}

// contractPaths are the REST paths of DESIGN.md section 8, as OpenAPI templates.
var contractPaths = []string{
	"/v1/identity", "/v1/identity/{id}", "/v1/identity/me", "/v1/identity/bulk",
	"/v1/auth/login", "/v1/auth/logout", "/v1/auth/mfa/setup", "/v1/auth/mfa/verify", "/v1/auth/mfa/disable",
	"/v1/api-keys", "/v1/api-keys/{id}", "/v1/api-keys/test",
	"/v1/invitations", "/v1/invitations/{id}", "/v1/invitations/validate", "/v1/invitations/accept", "/v1/invitations/{id}/resend",
	"/v1/sessions", "/v1/sessions/{id}", "/v1/sessions/refresh", "/v1/sessions/cleanup",
	"/v1/events", "/v1/events/{id}", "/v1/events/identity/{identity_id}", "/v1/events/types", "/v1/events/stats",
	"/v1/events/{id}/retry", "/v1/events/cleanup",
	"/v1/policy", "/v1/policy/{id}", "/v1/policy/bulk", "/v1/policy/test",
	"/v1/memory", "/v1/memory/{id}", "/v1/memory/bulk", "/v1/memory/{id}/restore", "/v1/memory/search",
	"/v1/usage/events", "/v1/usage/daily", "/v1/usage/summary", "/v1/usage/aggregate",
	"/v1/webhooks", "/v1/webhooks/{id}", "/v1/webhooks/{webhook_id}/deliveries", "/v1/webhooks/{id}/stats",
	"/v1/webhooks/event-types",
	"/v1/sso/login/{provider}", "/v1/sso/callback/{provider}",
	"/v1/admin/rate-limits", "/v1/monitoring/health",
}

// TestIdentityCreatedReachesTheStream checks the outbox path end to end: the event
// is on JetStream exactly once.
func TestIdentityCreatedReachesTheStream(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all")
	ctx := context.Background()
	boot, err := a.Identity().Service().Bootstrap(ctx, "events", "Events")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	resp, err := apitest.CallGRPC(ctx, tgt.GRPC, apitest.Case{Method: createIdentity, Credential: boot.APIKey,
		Request: &identityv1.CreateIdentityRequest{ExternalId: "watched"}})
	require.NoError(t, err)
	id := resp.(*identityv1.CreateIdentityResponse).GetIdentity().GetId()

	nc, err := nats.Connect(s.natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	subject := fmt.Sprintf("manushya.%s.identity.created", boot.TenantID)
	cons, err := js.OrderedConsumer(ctx, "MANUSHYA", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	require.NoError(t, err)

	var found int
	require.Eventually(t, func() bool {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return false
		}
		for msg := range batch.Messages() {
			ev, err := bus.ParseCloudEvent(msg.Data())
			require.NoError(t, err)
			if ev.Subject == id {
				found++
				require.Equal(t, "identity.created", ev.Type)
			}
		}
		return found > 0
	}, 10*time.Second, 50*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	batch, err := cons.FetchNoWait(100)
	require.NoError(t, err)
	for msg := range batch.Messages() {
		if ev, _ := bus.ParseCloudEvent(msg.Data()); ev.Subject == id {
			found++
		}
	}
	require.Equal(t, 1, found, "identity.created is published exactly once")
}
