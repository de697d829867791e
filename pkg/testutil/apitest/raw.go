package apitest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// RawCase is a REST request sent exactly as written, for what only REST has:
// malformed JSON, unknown fields, trailing slashes, unknown routes.
type RawCase struct {
	Name string
	// HTTPMethod defaults to GET.
	HTTPMethod string
	// Path is appended to Target.RESTBase as is, query string included.
	Path string
	// Body is sent as is, with Content-Type application/json when not empty.
	Body string
	// Credential is an API key sent as x-api-key; empty sends none.
	Credential string
	// Headers are added to the request (and may replace Content-Type).
	Headers map[string]string

	// WantStatus is the expected HTTP status.
	WantStatus int
	// WantReason, when set, is the ErrorInfo reason the error body must carry.
	WantReason string
	// WantField, when set, must be named by a BadRequest field violation of the
	// error body.
	WantField string
	// Check, when set, is called with the status and the raw body.
	Check func(t testing.TB, status int, body []byte)
}

// RunRaw runs each raw case as a subtest named after it, one after another.
func RunRaw(t *testing.T, target Target, cases ...RawCase) {
	t.Helper()
	require.NotEmpty(t, target.RESTBase, "apitest: Target.RESTBase is empty")
	for _, rc := range cases {
		t.Run(rc.Name, func(t *testing.T) {
			code, header, body, err := CallRaw(t.Context(), target, rc)
			require.NoError(t, err)
			verifyRaw(t, rc, code, header, body)
		})
	}
}

// CallRaw sends the raw case and returns the HTTP status, header and body.
func CallRaw(ctx context.Context, target Target, rc RawCase) (int, http.Header, []byte, error) {
	verb := rc.HTTPMethod
	if verb == "" {
		verb = http.MethodGet
	}
	u := strings.TrimSuffix(target.RESTBase, "/") + rc.Path
	var body io.Reader // a nil *strings.Reader would not be a nil io.Reader
	if rc.Body != "" {
		body = strings.NewReader(rc.Body)
	}
	req, err := http.NewRequestWithContext(ctx, verb, u, body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("apitest: raw case %q: build %s %s: %w", rc.Name, verb, u, err)
	}
	req.Header.Set("Accept", "application/json")
	if rc.Body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if rc.Credential != "" {
		req.Header.Set(APIKeyHeader, rc.Credential)
	}
	for k, v := range rc.Headers {
		req.Header.Set(k, v)
	}
	return do(target.httpClient(), req)
}

// verifyRaw checks a raw answer against the case.
func verifyRaw(t testing.TB, rc RawCase, code int, header http.Header, body []byte) {
	t.Helper()
	require.Equalf(t, rc.WantStatus, code, "%s %s: HTTP status (body %s)", rc.HTTPMethod, rc.Path, body)
	if rc.WantReason != "" || rc.WantField != "" {
		restErr, err := decodeError(code, header, body)
		require.NoError(t, err)
		verifyStatus(t, rc.WantReason, rc.WantField, restErr.GRPCStatus())
	}
	if rc.Check != nil {
		rc.Check(t, code, body)
	}
}
