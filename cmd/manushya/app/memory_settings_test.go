package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

const (
	getMemorySettings    = "/manushya.memory.v1.MemoryService/GetMemorySettings"
	updateMemorySettings = "/manushya.memory.v1.MemoryService/UpdateMemorySettings"
)

// TestMemorySettingsAndEncryption: the memory settings over gRPC and REST (admins
// only, through the policy baselines), then a tenant with encrypt_text: its text
// round-trips over REST, vector search answers, keyword search is refused.
func TestMemorySettingsAndEncryption(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "identity,memory,embedding,policy,gateway")
	ctx := context.Background()
	svc := a.Identity().Service()
	boot, err := svc.Bootstrap(ctx, "memset", "Memory settings")
	require.NoError(t, err)
	admin := boot.APIKey
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	resp, err := apitest.CallGRPC(ctx, tgt.GRPC, apitest.Case{Method: createIdentity, Credential: admin,
		Request: &identityv1.CreateIdentityRequest{ExternalId: "alice", Role: "user"}})
	require.NoError(t, err)
	alice, err := svc.IssueAPIKey(ctx, boot.TenantID, resp.(*identityv1.CreateIdentityResponse).GetIdentity().GetId(), "k", nil, nil)
	require.NoError(t, err)

	settingsIs := func(encrypt bool, days int32) func(testing.TB, proto.Message) {
		return func(t testing.TB, m proto.Message) {
			var st *memoryv1.MemorySettings
			switch r := m.(type) {
			case *memoryv1.GetMemorySettingsResponse:
				st = r.GetSettings()
			case *memoryv1.UpdateMemorySettingsResponse:
				st = r.GetSettings()
			}
			require.Equal(t, encrypt, st.GetEncryptText())
			require.Equal(t, days, st.GetRestoreWindowDays())
		}
	}
	apitest.Run(t, tgt,
		apitest.Case{Name: "defaults", Method: getMemorySettings, Credential: admin, Check: settingsIs(false, 30)},
		apitest.Case{Name: "users may not read them", Method: getMemorySettings, Credential: alice, WantCode: codes.PermissionDenied},
		apitest.Case{Name: "users may not change them", Method: updateMemorySettings, Credential: alice, WantCode: codes.PermissionDenied,
			Request: &memoryv1.UpdateMemorySettingsRequest{Settings: &memoryv1.MemorySettings{RestoreWindowDays: 1}}},
		apitest.Case{Name: "window out of range", Method: updateMemorySettings, Credential: admin, WantCode: codes.InvalidArgument,
			WantField: "settings.restore_window_days",
			Request:   &memoryv1.UpdateMemorySettingsRequest{Settings: &memoryv1.MemorySettings{RestoreWindowDays: 5000}}},
		apitest.Case{Name: "unknown field", Method: updateMemorySettings, Credential: admin, WantCode: codes.InvalidArgument,
			WantField: "update_mask.paths[0]",
			Request: &memoryv1.UpdateMemorySettingsRequest{Settings: &memoryv1.MemorySettings{},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"colour"}}}},
		apitest.Case{Name: "set the window", Method: updateMemorySettings, Credential: admin, Check: settingsIs(false, 14),
			Request: &memoryv1.UpdateMemorySettingsRequest{Settings: &memoryv1.MemorySettings{RestoreWindowDays: 14}}},
	)

	const secret = "alice keeps the spare key in the blue teapot"
	var id string
	apitest.RunRaw(t, tgt,
		apitest.RawCase{
			Name: "turn encryption on (mask from the body)", HTTPMethod: http.MethodPatch, Path: "/v1/memory/settings",
			Credential: admin, Body: `{"encrypt_text":true}`, WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				require.JSONEq(t, `true`, field(t, body, "settings", "encrypt_text"))
				require.JSONEq(t, `14`, field(t, body, "settings", "restore_window_days"), "left alone")
			},
		},
		apitest.RawCase{
			Name: "read back with a trailing slash", Path: "/v1/memory/settings/", Credential: admin, WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				require.JSONEq(t, `true`, field(t, body, "settings", "encrypt_text"))
			},
		},
		apitest.RawCase{
			Name: "bad window over REST", HTTPMethod: http.MethodPatch, Path: "/v1/memory/settings", Credential: admin,
			Body: `{"restore_window_days":-3}`, WantStatus: http.StatusBadRequest, WantField: "settings.restore_window_days",
		},
		apitest.RawCase{
			Name: "users may not change them over REST", HTTPMethod: http.MethodPatch, Path: "/v1/memory/settings", Credential: alice,
			Body: `{"encrypt_text":false}`, WantStatus: http.StatusForbidden,
		},
		apitest.RawCase{
			Name: "create a sealed memory", HTTPMethod: http.MethodPost, Path: "/v1/memory", Credential: alice,
			Body: `{"text":"` + secret + `","wait":true}`, WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				require.JSONEq(t, `"`+secret+`"`, field(t, body, "memory", "text"))
				require.JSONEq(t, `"EMBEDDING_STATUS_READY"`, field(t, body, "memory", "embedding_status"))
				require.NoError(t, json.Unmarshal([]byte(field(t, body, "memory", "id")), &id))
			},
		},
	)
	apitest.RunRaw(t, tgt,
		apitest.RawCase{
			Name: "get opens it", Path: "/v1/memory/" + id, Credential: alice, WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				require.JSONEq(t, `"`+secret+`"`, field(t, body, "memory", "text"))
			},
		},
		apitest.RawCase{
			Name: "vector search finds it", HTTPMethod: http.MethodPost, Path: "/v1/memory/search", Credential: alice,
			Body: `{"query":"spare key teapot","mode":"SEARCH_MODE_VECTOR"}`, WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				var got struct {
					Results []struct {
						Memory struct {
							ID   string `json:"id"`
							Text string `json:"text"`
						} `json:"memory"`
					} `json:"results"`
				}
				require.NoError(t, json.Unmarshal(body, &got))
				require.NotEmpty(t, got.Results)
				require.Equal(t, id, got.Results[0].Memory.ID)
				require.Equal(t, secret, got.Results[0].Memory.Text)
			},
		},
		apitest.RawCase{
			Name: "keyword search is refused", HTTPMethod: http.MethodPost, Path: "/v1/memory/search", Credential: alice,
			Body: `{"query":"teapot","mode":"SEARCH_MODE_KEYWORD"}`, WantStatus: http.StatusBadRequest,
		},
	)
}

// field returns the raw JSON of body.<outer>.<inner>.
func field(t testing.TB, body []byte, outer, inner string) string {
	t.Helper()
	var m map[string]map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &m), string(body))
	v, ok := m[outer][inner]
	require.True(t, ok, "%s.%s missing in %s", outer, inner, body)
	return string(v)
}
