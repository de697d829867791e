package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
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

// TestMemoryConfigReachesService: the memory section of the configuration is what
// the memory service runs with. memory.max_text_bytes=100 refuses a 200-byte text
// over gRPC and REST, naming the field, and takes a 100-byte one; a
// memory.embedding_model that no provider serves is asked for by name, so the
// memory's embedding fails naming it.
func TestMemoryConfigReachesService(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all", "MANUSHYA_MEMORY_MAX_TEXT_BYTES=100", "MANUSHYA_MEMORY_EMBEDDING_MODEL=no-such-model")
	boot, err := a.Identity().Service().Bootstrap(context.Background(), "memcfg", "Memory config")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())

	apitest.Run(t, tgt,
		apitest.Case{
			Name: "text over memory.max_text_bytes", Method: createMemory, Credential: boot.APIKey,
			Request:  &memoryv1.CreateMemoryRequest{Text: strings.Repeat("x", 200)},
			WantCode: codes.InvalidArgument, WantField: "text",
			CheckStatus: func(t testing.TB, st *status.Status) {
				require.Contains(t, fmt.Sprint(st.Details()), "is longer than 100 bytes")
			},
		},
		apitest.Case{
			Name: "text at memory.max_text_bytes, embedded with memory.embedding_model", Method: createMemory, Credential: boot.APIKey,
			Request: &memoryv1.CreateMemoryRequest{Text: strings.Repeat("y", 100), Wait: true},
			Check: func(t testing.TB, resp proto.Message) {
				m := apitest.As[*memoryv1.CreateMemoryResponse](t, resp).GetMemory()
				require.Len(t, m.GetText(), 100)
				require.Equal(t, "no-such-model", m.GetEmbeddingModel())
				require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_FAILED, m.GetEmbeddingStatus())
				require.Contains(t, m.GetEmbeddingError(), `unknown model "no-such-model"`)
			},
		},
	)
}
