package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

// TestMemoryEndToEnd stores a memory through the REST edge and finds it by vector
// search: the memory service's embedder calls the embedding service over gRPC with
// its own service credential, as it does in every deployment shape.
func TestMemoryEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all")
	boot, err := a.Identity().Service().Bootstrap(context.Background(), "mem", "Memories")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())

	var id string
	apitest.RunRaw(t, tgt,
		apitest.RawCase{
			Name: "create and wait until searchable", HTTPMethod: http.MethodPost, Path: "/v1/memory/", Credential: boot.APIKey,
			Body:       `{"text":"Client meeting notes: discussed retirement planning","type":"meeting_note","metadata":{"client_id":"CS001"},"wait":true}`,
			WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				var got struct {
					Memory struct {
						ID     string `json:"id"`
						Status string `json:"embedding_status"`
						Error  string `json:"embedding_error"`
					} `json:"memory"`
				}
				require.NoError(t, json.Unmarshal(body, &got))
				require.Equal(t, "EMBEDDING_STATUS_READY", got.Memory.Status, got.Memory.Error)
				id = got.Memory.ID
			},
		},
		apitest.RawCase{
			Name: "vector search finds it", HTTPMethod: http.MethodPost, Path: "/v1/memory/search", Credential: boot.APIKey,
			Body:       `{"query":"retirement planning","similarity_threshold":0.1,"limit":10,"mode":"SEARCH_MODE_VECTOR"}`,
			WantStatus: http.StatusOK,
			Check: func(t testing.TB, _ int, body []byte) {
				var got struct {
					Mode    string `json:"mode"`
					Results []struct {
						Memory struct {
							ID string `json:"id"`
						} `json:"memory"`
					} `json:"results"`
				}
				require.NoError(t, json.Unmarshal(body, &got))
				require.Equal(t, "SEARCH_MODE_VECTOR", got.Mode, "the query was embedded, not answered by keyword")
				require.NotEmpty(t, got.Results)
				require.Equal(t, id, got.Results[0].Memory.ID)
			},
		},
		apitest.RawCase{
			Name: "the contract's search payload", HTTPMethod: http.MethodPost, Path: "/v1/memory/search", Credential: boot.APIKey,
			Body: `{"query":"retirement planning","similarity_threshold":0.7,"limit":10}`, WantStatus: http.StatusOK,
		},
		apitest.RawCase{
			Name: "a query vector holding NaN is refused, naming the field", HTTPMethod: http.MethodPost, Path: "/v1/memory/search", Credential: boot.APIKey,
			Body:       `{"vector":[` + strings.Repeat("0.05,", 383) + `"NaN"]}`,
			WantStatus: http.StatusBadRequest,
			Check: func(t testing.TB, _ int, body []byte) {
				require.Contains(t, string(body), `"vector"`)
				require.Contains(t, string(body), "finite")
			},
		},
	)
}
