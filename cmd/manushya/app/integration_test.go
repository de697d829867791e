package app_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

// TestSeparateTargets runs identity, memory and gateway as three servers on their
// own ports, as the Helm chart deploys them, and drives them through REST.
func TestSeparateTargets(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	identityProc := s.start(t, "identity")
	memoryProc := s.start(t, "memory", "MANUSHYA_SERVICES_IDENTITY_ADDR="+identityProc.GRPCAddr())
	gatewayProc := s.start(t, "gateway",
		"MANUSHYA_SERVICES_IDENTITY_ADDR="+identityProc.GRPCAddr(),
		"MANUSHYA_SERVICES_MEMORY_ADDR="+memoryProc.GRPCAddr(),
	)
	require.Nil(t, gatewayProc.Identity(), "the gateway process runs no service")

	boot, err := identityProc.Identity().Service().Bootstrap(context.Background(), "split", "Split")
	require.NoError(t, err)

	// The REST edge of the gateway process; gRPC goes straight to the identity process.
	tgt := target(t, identityProc.GRPCAddr(), gatewayProc.HTTPAddr())
	var createdID string
	apitest.RunRaw(t, tgt,
		apitest.RawCase{
			Name: "create through the gateway", HTTPMethod: http.MethodPost, Path: "/v1/identity/", Credential: boot.APIKey,
			Body: `{"external_id":"agent-1","kind":"IDENTITY_KIND_AGENT","role":"agent"}`, WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				var resp identityv1.CreateIdentityResponse
				require.NoError(t, unmarshalProtoNames(body, &resp))
				createdID = resp.GetIdentity().GetId()
			},
		},
		apitest.RawCase{
			Name: "memory authenticates through the identity service", HTTPMethod: http.MethodPost, Path: "/v1/memory/",
			Credential: boot.APIKey, Body: `{"text":"Client meeting notes: ...","type":"meeting_note","metadata":{"client_id":"CS001"}}`,
			WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				require.Contains(t, string(body), `"client_id":"CS001"`)
			},
		},
		apitest.RawCase{
			Name: "memory refuses a bad key", HTTPMethod: http.MethodPost, Path: "/v1/memory/search",
			Credential: "mk_live_0000000000000000000000000000000000000000", Body: `{"query":"retirement planning","similarity_threshold":0.7,"limit":10}`,
			WantStatus: http.StatusUnauthorized,
		},
		apitest.RawCase{
			Name: "a target that is not deployed is unavailable", HTTPMethod: http.MethodGet, Path: "/v1/policy",
			Credential: boot.APIKey, WantStatus: http.StatusServiceUnavailable,
		},
	)
	require.NotEmpty(t, createdID)
	apitest.Run(t, tgt, apitest.Case{
		Name: "get it back", Method: getIdentity, Credential: boot.APIKey,
		Request: &identityv1.GetIdentityRequest{Id: createdID}, WantCode: codes.OK,
		Check: func(t testing.TB, resp proto.Message) {
			require.Equal(t, "agent-1", apitest.As[*identityv1.GetIdentityResponse](t, resp).GetIdentity().GetExternalId())
		},
	})
}
