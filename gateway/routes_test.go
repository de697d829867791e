package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/pb/openapi"
)

// methodRecorder is an upstream that serves every method by recording which one
// was called, keyed by request id.
type methodRecorder struct {
	mu     sync.Mutex
	called map[string]string
}

func (m *methodRecorder) handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	md, _ := metadata.FromIncomingContext(stream.Context())
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range md.Get(mdRequestID) {
		m.called[id] = method
	}
	return status.Error(codes.Unimplemented, "recorded")
}

func (m *methodRecorder) method(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.called[id]
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// TestEveryOperationRoutes sends each operation of the OpenAPI document, with
// and without a trailing slash, and checks that it reaches the RPC the document
// names: the REST contract, and a guard against one route shadowing another.
func TestEveryOperationRoutes(t *testing.T) {
	t.Parallel()
	rec := &methodRecorder{called: map[string]string{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.UnknownServiceHandler(rec.handle))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	upstreams := map[string]string{}
	for _, key := range upstreamKeys {
		upstreams[key] = lis.Addr().String()
	}
	_, url := startGateway(t, Config{Upstreams: upstreams})

	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				In string `json:"in"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(openapi.JSON, &doc))
	require.NotEmpty(t, doc.Paths)

	n := 0
	for path, ops := range doc.Paths {
		for verb, op := range ops {
			// operationId is Service_Method, with a number added for extra bindings.
			service, method, ok := strings.Cut(strings.TrimRight(op.OperationID, "0123456789"), "_")
			require.True(t, ok, op.OperationID)
			hasBody := false
			for _, p := range op.Parameters {
				hasBody = hasBody || p.In == "body"
			}
			concrete := pathParam.ReplaceAllString(path, "p1")
			for _, suffix := range []string{"", "/"} {
				n++
				id := fmt.Sprintf("route-%d", n)
				req, err := http.NewRequestWithContext(context.Background(), strings.ToUpper(verb), url+concrete+suffix, nil)
				require.NoError(t, err)
				if hasBody {
					req.Body = http.NoBody
				}
				req.Header.Set(headerRequestID, id)
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				_ = resp.Body.Close()
				require.Equal(t, http.StatusNotImplemented, resp.StatusCode, "%s %s%s", verb, path, suffix)
				require.True(t, strings.HasSuffix(rec.method(id), "."+service+"/"+method),
					"%s %s%s reached %q, want %s.%s", verb, path, suffix, rec.method(id), service, method)
			}
		}
	}
}
