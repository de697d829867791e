package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestRawStreamRoutes(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]bool{
		"/v1/identity/0190d6b4-6f1e-7b39-9a47-4e5b2b6f0a11/export": true,
		"/v1/identity/me/export":                                   true,
		"/v1/identity/me":                                          false,
		"/v1/identity//export":                                     false,
		"/v1/identity/me/export/more":                              false,
		"/v1/identity/a/b/export":                                  false,
		"/v1/usage/export":                                         false,
	} {
		require.Equal(t, want, rawStream(httptest.NewRequest(http.MethodGet, path, nil)), path)
	}
	require.False(t, rawStream(httptest.NewRequest(http.MethodPost, "/v1/identity/me/export", nil)))
}

// A refused export answers with the API's error body, not grpc-gateway's
// {"error": ...} of streamed calls.
func TestRawStreamErrorBody(t *testing.T) {
	t.Parallel()
	m := rawStreamMarshaler{newMarshaler()}
	st := status.New(codes.NotFound, "identity x not found")
	body, err := m.Marshal(map[string]proto.Message{"error": st.Proto()})
	require.NoError(t, err)
	require.JSONEq(t, `{"code":5,"message":"identity x not found"}`, string(body))
	require.Nil(t, m.Delimiter())
}
