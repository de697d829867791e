package apitest

import (
	"net/http"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// APIKeyHeader is the header (REST) and metadata key (gRPC) that carries
// Case.Credential and RawCase.Credential.
const APIKeyHeader = "x-api-key"

// Transport says which way a case is being sent.
type Transport string

// The two transports every case runs over.
const (
	GRPC Transport = "grpc"
	REST Transport = "rest"
)

// Case is one API call and what must come back, transport-independent.
type Case struct {
	// Name names the subtests: "<Name>/grpc" and "<Name>/rest".
	Name string
	// Method is the full gRPC method, e.g.
	// "/manushya.identity.v1.IdentityService/GetIdentity".
	Method string
	// Request is the request message; nil sends an empty one. Over REST, path
	// parameters are taken from its fields per the http rule, the body is the
	// field the rule names ("*" is the whole message minus path parameters), and
	// the remaining populated fields become query parameters.
	Request proto.Message
	// NewRequest, when set, is called once per transport instead of using
	// Request. Each case runs twice, so a case that creates something with a
	// unique key needs a different key for each run.
	NewRequest func(tr Transport) proto.Message
	// Credential is an API key sent as x-api-key; empty sends none.
	Credential string
	// Headers are sent as HTTP headers over REST and as metadata (keys in lower
	// case) over gRPC, e.g. {"Authorization": "Bearer ..."}.
	Headers map[string]string

	// WantCode is the expected gRPC code; over REST the HTTP status must be
	// runtime.HTTPStatusFromCode(WantCode) and the body's code must be WantCode.
	WantCode codes.Code
	// WantHTTPStatus, when not zero, replaces the status mapped from WantCode for
	// REST answers that differ on purpose (302 for the SSO redirects).
	WantHTTPStatus int
	// WantReason, when set, is the google.rpc.ErrorInfo reason the error must carry.
	WantReason string
	// WantField, when set, must be named by a google.rpc.BadRequest field violation.
	WantField string

	// Check, when set, is called with the decoded response of a successful call;
	// the response has the same Go type over both transports.
	Check func(t testing.TB, resp proto.Message)
	// CheckStatus, when set, is called with the status of a failed call (over
	// REST, the status decoded from the error body).
	CheckStatus func(t testing.TB, st *status.Status)
}

// Target is where the API under test listens.
type Target struct {
	// GRPC is a connection to the gRPC server.
	GRPC *grpc.ClientConn
	// RESTBase is the REST edge's base URL, e.g. http://127.0.0.1:8080.
	RESTBase string
	// HTTPClient sends REST requests. Nil means a client that does not follow
	// redirects, so that a 302 is seen as it is.
	HTTPClient *http.Client
}

// noRedirectClient is the HTTP client used when Target.HTTPClient is nil.
var noRedirectClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (tg Target) httpClient() *http.Client {
	if tg.HTTPClient != nil {
		return tg.HTTPClient
	}
	return noRedirectClient
}

// Run runs each case as two subtests, "<name>/grpc" and "<name>/rest". The two
// transports of a case run in parallel; the cases run one after another, in
// order, and Run returns when all are done, so the caller's deferred cleanup
// and later steps see finished calls.
func Run(t *testing.T, target Target, cases ...Case) {
	t.Helper()
	require.NotNil(t, target.GRPC, "apitest: Target.GRPC is nil")
	require.NotEmpty(t, target.RESTBase, "apitest: Target.RESTBase is empty")
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Run(string(GRPC), func(t *testing.T) {
				t.Parallel()
				resp, rpcErr, err := callGRPC(t.Context(), target.GRPC, c)
				require.NoError(t, err)
				verifyGRPC(t, c, resp, rpcErr)
			})
			t.Run(string(REST), func(t *testing.T) {
				t.Parallel()
				resp, restErr, httpStatus, err := CallREST(t.Context(), target, c)
				require.NoError(t, err)
				verifyREST(t, c, resp, restErr, httpStatus)
			})
		})
	}
}

// As returns resp as T, failing the test when it is another type. It saves the
// type assertion at the top of every Check.
func As[T proto.Message](t testing.TB, resp proto.Message) T {
	t.Helper()
	typed, ok := resp.(T)
	require.Truef(t, ok, "apitest: response is %T, want %T", resp, *new(T))
	return typed
}

// verifyGRPC checks a gRPC outcome against the case.
func verifyGRPC(t testing.TB, c Case, resp proto.Message, rpcErr error) {
	t.Helper()
	if c.WantCode == codes.OK {
		require.NoErrorf(t, rpcErr, "%s over gRPC: want OK", c.Method)
		if c.Check != nil {
			c.Check(t, resp)
		}
		return
	}
	require.Errorf(t, rpcErr, "%s over gRPC: want %s, got OK with %v", c.Method, c.WantCode, resp)
	st := status.Convert(rpcErr)
	require.Equalf(t, c.WantCode, st.Code(), "%s over gRPC: code (message %q, details %v)", c.Method, st.Message(), st.Details())
	verifyStatus(t, c.WantReason, c.WantField, st)
	if c.CheckStatus != nil {
		c.CheckStatus(t, st)
	}
}

// verifyREST checks a REST outcome against the case.
func verifyREST(t testing.TB, c Case, resp proto.Message, restErr *RESTError, httpStatus int) {
	t.Helper()
	wantStatus := c.WantHTTPStatus
	if wantStatus == 0 {
		wantStatus = runtime.HTTPStatusFromCode(c.WantCode)
	}
	if c.WantCode == codes.OK {
		require.Nilf(t, restErr, "%s over REST: want HTTP %d", c.Method, wantStatus)
		require.Equalf(t, wantStatus, httpStatus, "%s over REST: HTTP status", c.Method)
		if c.Check != nil {
			c.Check(t, resp)
		}
		return
	}
	require.NotNilf(t, restErr, "%s over REST: want %s (HTTP %d), got HTTP %d with %v", c.Method, c.WantCode, wantStatus, httpStatus, resp)
	require.Equalf(t, wantStatus, httpStatus, "%s over REST: HTTP status (body %s)", c.Method, restErr.Body)
	st := restErr.GRPCStatus()
	require.Equalf(t, c.WantCode, st.Code(), "%s over REST: code in the error body %s", c.Method, restErr.Body)
	verifyStatus(t, c.WantReason, c.WantField, st)
	if c.CheckStatus != nil {
		c.CheckStatus(t, st)
	}
}

// verifyStatus checks the ErrorInfo reason and the BadRequest field of an error.
func verifyStatus(t testing.TB, wantReason, wantField string, st *status.Status) {
	t.Helper()
	if wantReason != "" {
		info := ErrorInfo(st)
		require.NotNilf(t, info, "want ErrorInfo reason %s; the error has no ErrorInfo (details %v)", wantReason, st.Details())
		require.Equalf(t, wantReason, info.GetReason(), "ErrorInfo reason (message %q)", st.Message())
	}
	if wantField != "" {
		fields := ViolationFields(st)
		require.Containsf(t, fields, wantField, "BadRequest field violations (message %q, details %v)", st.Message(), st.Details())
	}
}

// ErrorInfo returns the first google.rpc.ErrorInfo detail of st, or nil.
func ErrorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// ViolationFields returns the fields named by the google.rpc.BadRequest details of
// st, in order.
func ViolationFields(st *status.Status) []string {
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}
