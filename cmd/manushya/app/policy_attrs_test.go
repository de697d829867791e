package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	policyv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

const (
	createMemory   = "/manushya.memory.v1.MemoryService/CreateMemory"
	getMemory      = "/manushya.memory.v1.MemoryService/GetMemory"
	listMemories   = "/manushya.memory.v1.MemoryService/ListMemories"
	searchMemories = "/manushya.memory.v1.MemoryService/SearchMemories"
	updateMemory   = "/manushya.memory.v1.MemoryService/UpdateMemory"
	updateIdentity = "/manushya.identity.v1.IdentityService/UpdateIdentity"
	createPolicy   = "/manushya.policy.v1.PolicyService/CreatePolicy"
)

// TestAttributePolicies runs the issue's two attribute rules end to end over gRPC
// and REST: "an agent may read the memories of the identity it acts for" (Rego,
// on the agent's acts_for claim) and "deny reading memories whose
// metadata.classification is secret" (JSON Logic).
func TestAttributePolicies(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "identity,memory,embedding,policy,gateway")
	ctx := context.Background()
	svc := a.Identity().Service()
	boot, err := svc.Bootstrap(ctx, "attrs", "Attributes")
	require.NoError(t, err)
	admin := boot.APIKey
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())

	call := func(method, key string, req proto.Message) proto.Message {
		t.Helper()
		resp, err := apitest.CallGRPC(ctx, tgt.GRPC, apitest.Case{Method: method, Credential: key, Request: req})
		require.NoError(t, err, method)
		return resp
	}
	identityKey := func(req *identityv1.CreateIdentityRequest) (string, string) {
		t.Helper()
		id := call(createIdentity, admin, req).(*identityv1.CreateIdentityResponse).GetIdentity().GetId()
		key, err := svc.IssueAPIKey(ctx, boot.TenantID, id, "k", nil, nil)
		require.NoError(t, err)
		return id, key
	}
	aliceID, aliceKey := identityKey(&identityv1.CreateIdentityRequest{ExternalId: "alice", Role: "user"})
	bobID, _ := identityKey(&identityv1.CreateIdentityRequest{ExternalId: "bob", Role: "user"})
	actsFor, _ := structpb.NewStruct(map[string]any{"acts_for": aliceID})
	robotID, robotKey := identityKey(&identityv1.CreateIdentityRequest{ExternalId: "robot", Role: "agent",
		Kind: identityv1.IdentityKind_IDENTITY_KIND_AGENT, Claims: actsFor})

	memory := func(owner, text, classification string) string {
		t.Helper()
		md, _ := structpb.NewStruct(map[string]any{"classification": classification})
		return call(createMemory, admin, &memoryv1.CreateMemoryRequest{IdentityId: owner, Text: text, Metadata: md}).(*memoryv1.CreateMemoryResponse).GetMemory().GetId()
	}
	plain := memory(aliceID, "alice likes green tea", "internal")
	secret := memory(aliceID, "alice keeps her green tea recipe secret", "secret")
	bobs := memory(bobID, "bob likes green tea too", "internal")

	// Before any tenant policy the agent is held to its own memories.
	_, err = apitest.CallGRPC(ctx, tgt.GRPC, apitest.Case{Method: listMemories, Credential: robotKey,
		Request: &memoryv1.ListMemoriesRequest{IdentityId: aliceID}})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	call(createPolicy, admin, &policyv1.CreatePolicyRequest{
		Name: "agents-read-for", Language: policyv1.PolicyLanguage_POLICY_LANGUAGE_REGO, Resource: "memory",
		Actions: []string{"read", "list", "search"}, Effect: policyv1.Effect_EFFECT_ALLOW, Priority: 200, Roles: []string{"agent"},
		Source: "package agents\nmatch if input.resource.owner_id in input.principal.acts_for\n",
	})
	call(createPolicy, admin, &policyv1.CreatePolicyRequest{
		Name: "deny-secret", Language: policyv1.PolicyLanguage_POLICY_LANGUAGE_JSON_LOGIC, Resource: "memory",
		Actions: []string{"read", "list", "search"}, Effect: policyv1.Effect_EFFECT_DENY, Priority: 500,
		Source: `{"==": [{"var": "resource.attributes.metadata.classification"}, "secret"]}`,
	})
	// The change reaches the engine through the bus; wait until it decides with it.
	require.Eventually(t, func() bool {
		_, err := apitest.CallGRPC(ctx, tgt.GRPC, apitest.Case{Method: getMemory, Credential: admin,
			Request: &memoryv1.GetMemoryRequest{Id: secret}})
		return status.Code(err) == codes.NotFound
	}, 10*time.Second, 20*time.Millisecond)

	ids := func(ms []*memoryv1.Memory) []string {
		out := []string{}
		for _, m := range ms {
			out = append(out, m.GetId())
		}
		return out
	}
	apitest.Run(t, tgt,
		apitest.Case{
			Name: "agent lists the memories of the identity it acts for, secrets left out", Method: listMemories,
			Credential: robotKey, Request: &memoryv1.ListMemoriesRequest{IdentityId: aliceID}, WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				require.Equal(t, []string{plain}, ids(apitest.As[*memoryv1.ListMemoriesResponse](t, resp).GetMemories()))
			},
		},
		apitest.Case{
			Name: "agent searches them, secrets left out", Method: searchMemories, Credential: robotKey,
			Request:  &memoryv1.SearchMemoriesRequest{IdentityId: aliceID, Query: "green tea", Mode: memoryv1.SearchMode_SEARCH_MODE_KEYWORD},
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				var got []string
				for _, r := range apitest.As[*memoryv1.SearchMemoriesResponse](t, resp).GetResults() {
					got = append(got, r.GetMemory().GetId())
				}
				require.Equal(t, []string{plain}, got)
			},
		},
		apitest.Case{
			Name: "agent gets one of them", Method: getMemory, Credential: robotKey,
			Request: &memoryv1.GetMemoryRequest{Id: plain}, WantCode: codes.OK,
		},
		apitest.Case{
			Name: "a secret one is not found", Method: getMemory, Credential: robotKey,
			Request: &memoryv1.GetMemoryRequest{Id: secret}, WantCode: codes.NotFound,
		},
		apitest.Case{
			Name: "the policy grants reads, not updates", Method: updateMemory, Credential: robotKey,
			Request: &memoryv1.UpdateMemoryRequest{Memory: &memoryv1.Memory{Id: plain, Text: "changed"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"text"}}},
			WantCode: codes.NotFound,
		},
		apitest.Case{
			Name: "agent gets nothing of another identity", Method: getMemory, Credential: robotKey,
			Request: &memoryv1.GetMemoryRequest{Id: bobs}, WantCode: codes.NotFound,
		},
		apitest.Case{
			Name: "agent may not name another identity", Method: listMemories, Credential: robotKey,
			Request: &memoryv1.ListMemoriesRequest{IdentityId: bobID}, WantCode: codes.PermissionDenied,
		},
		apitest.Case{
			Name: "the owner's own secret is denied too", Method: getMemory, Credential: aliceKey,
			Request: &memoryv1.GetMemoryRequest{Id: secret}, WantCode: codes.NotFound,
		},
		apitest.Case{
			Name: "the owner lists hers without it", Method: listMemories, Credential: aliceKey,
			Request: &memoryv1.ListMemoriesRequest{}, WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				require.Equal(t, []string{plain}, ids(apitest.As[*memoryv1.ListMemoriesResponse](t, resp).GetMemories()))
			},
		},
		apitest.Case{
			Name: "admins are denied secrets as well", Method: getMemory, Credential: admin,
			Request: &memoryv1.GetMemoryRequest{Id: secret}, WantCode: codes.NotFound,
		},
		apitest.Case{
			Name: "an agent cannot make itself act for someone else", Method: updateIdentity, Credential: robotKey,
			NewRequest: func(apitest.Transport) proto.Message {
				c, _ := structpb.NewStruct(map[string]any{"acts_for": bobID})
				return &identityv1.UpdateIdentityRequest{Identity: &identityv1.Identity{Id: robotID, Claims: c},
					UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"claims"}}}
			},
			WantCode: codes.PermissionDenied,
		},
	)

	// Identities pass their attributes too: a rule on claims hides one.
	vipClaims, _ := structpb.NewStruct(map[string]any{"vip": true})
	vipID, _ := identityKey(&identityv1.CreateIdentityRequest{ExternalId: "vip", Role: "user", Claims: vipClaims})
	call(createPolicy, admin, &policyv1.CreatePolicyRequest{
		Name: "hide-vips", Language: policyv1.PolicyLanguage_POLICY_LANGUAGE_REGO, Resource: "identity",
		Actions: []string{"read", "update"}, Effect: policyv1.Effect_EFFECT_DENY, Priority: 500,
		Source: "package vip\nmatch if input.resource.attributes.claims.vip == true\n",
	})
	require.Eventually(t, func() bool {
		_, err := apitest.CallGRPC(ctx, tgt.GRPC, apitest.Case{Method: getIdentity, Credential: admin,
			Request: &identityv1.GetIdentityRequest{Id: vipID}})
		return status.Code(err) == codes.NotFound
	}, 10*time.Second, 20*time.Millisecond)
	apitest.Run(t, tgt,
		apitest.Case{
			Name: "a denied identity is not found", Method: getIdentity, Credential: admin,
			Request: &identityv1.GetIdentityRequest{Id: vipID}, WantCode: codes.NotFound,
		},
		apitest.Case{
			Name: "nor updated", Method: updateIdentity, Credential: admin,
			Request: &identityv1.UpdateIdentityRequest{Identity: &identityv1.Identity{Id: vipID, ExternalId: "vip2"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"external_id"}}},
			WantCode: codes.PermissionDenied,
		},
		apitest.Case{
			Name: "other identities are unaffected", Method: getIdentity, Credential: admin,
			Request: &identityv1.GetIdentityRequest{Id: bobID}, WantCode: codes.OK,
		},
	)

	// Withdrawing acts_for (an admin's change) stops the grant: the identity event
	// drops the cached claims.
	noClaims, _ := structpb.NewStruct(map[string]any{})
	call(updateIdentity, admin, &identityv1.UpdateIdentityRequest{Identity: &identityv1.Identity{Id: robotID, Claims: noClaims},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"claims"}}, ReplaceClaims: true})
	require.Eventually(t, func() bool {
		_, err := apitest.CallGRPC(ctx, tgt.GRPC, apitest.Case{Method: getMemory, Credential: robotKey,
			Request: &memoryv1.GetMemoryRequest{Id: plain}})
		return status.Code(err) == codes.NotFound
	}, 10*time.Second, 20*time.Millisecond)
}
