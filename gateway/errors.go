package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// errorDomain is the ErrorInfo domain of every Manushya error.
const errorDomain = "manushya.ai"

// newStatus builds a status carrying the ErrorInfo every Manushya error has.
func newStatus(code codes.Code, reason errorsv1.ErrorReason, msg string) *status.Status {
	st := status.New(code, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason.String(), Domain: errorDomain}); err == nil {
		return withInfo
	}
	return st
}

// requestError is a problem with the request itself, found before any service
// saw it. It always answers 400 INVALID_ARGUMENT.
type requestError struct {
	reason      errorsv1.ErrorReason
	field       string // empty when no single field is at fault
	description string
}

func (e *requestError) Error() string {
	if e.field == "" {
		return e.description
	}
	return e.field + ": " + e.description
}

func (e *requestError) status() *status.Status {
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: e.reason.String(), Domain: errorDomain}}
	if e.field != "" {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: e.field, Description: e.description},
		}})
	}
	st := status.New(codes.InvalidArgument, e.Error())
	// Adding details fails only for messages that cannot be marshalled; these can.
	if withDetails, err := st.WithDetails(details...); err == nil {
		return withDetails
	}
	return st
}

func bodyTooLarge(limit int64) *requestError {
	return &requestError{
		reason:      errorsv1.ErrorReason_ERROR_REASON_REQUEST_TOO_LARGE,
		field:       "body",
		description: fmt.Sprintf("the request body is larger than the limit of %d bytes", limit),
	}
}

// handleError is the mux's error handler: every error response goes through it.
func (g *Gateway) handleError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	httpStatus := 0
	var withStatus *runtime.HTTPStatusError
	if errors.As(err, &withStatus) {
		httpStatus, err = withStatus.HTTPStatus, withStatus.Err
	}
	st := stateFrom(r.Context())
	s, ok := status.FromError(err)
	switch {
	case !ok && httpStatus == http.StatusBadRequest:
		// A malformed percent-encoding in the path, found while routing.
		s = (&requestError{
			reason:      errorsv1.ErrorReason_ERROR_REASON_MALFORMED_REQUEST,
			field:       "path",
			description: err.Error(),
		}).status()
	case s.Code() == codes.InvalidArgument && (st == nil || !st.upstreamCalled):
		s = gatewayRequestError(ctx, r, st, s.Message()).status()
	default:
		s = g.normalise(ctx, r, s)
	}
	md, _ := runtime.ServerMetadataFromContext(ctx)
	g.writeStatus(w, r, s, md, httpStatus)
}

// gatewayRequestError explains an InvalidArgument grpc-gateway produced while
// turning the HTTP request into a gRPC one. Body problems were already described
// by the decoder; path and query problems only exist as grpc-gateway's message, so
// the field is read from it.
func gatewayRequestError(ctx context.Context, r *http.Request, st *requestState, msg string) *requestError {
	if st != nil && st.decodeErr != nil {
		return st.decodeErr
	}
	for _, p := range paramErrorPatterns {
		m := p.re.FindStringSubmatch(msg)
		if m == nil {
			continue
		}
		e := &requestError{reason: errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, field: m[1], description: p.describe(m)}
		if p.query {
			if field, desc, ok := describeQueryValue(ctx, r, m[1]); ok {
				e.field, e.description = field, desc
			}
		}
		return e
	}
	return &requestError{reason: errorsv1.ErrorReason_ERROR_REASON_MALFORMED_REQUEST, description: msg}
}

// describeQueryValue words a query parameter error like a body one ("expected an
// integer, got "abc""). grpc-gateway names only the field's last name segment, so
// the query key is found among the request's keys and resolved against the
// method's request message.
func describeQueryValue(ctx context.Context, r *http.Request, name string) (string, string, bool) {
	rpc, ok := runtime.RPCMethod(ctx)
	if !ok {
		return "", "", false
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(
		protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(rpc, "/"), "/", ".")))
	if err != nil {
		return "", "", false
	}
	method, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return "", "", false
	}
	for key, vals := range r.URL.Query() {
		segs := strings.Split(key, ".")
		path := make([]pathSeg, len(segs))
		for i, seg := range segs {
			path[i] = pathSeg{key: seg}
		}
		field, fd, _ := resolvePath(method.Input(), path)
		if fd == nil || string(fd.Name()) != name || len(vals) == 0 {
			continue
		}
		expect := expectation(fd, fd.IsList())
		if expect == "" {
			return "", "", false
		}
		return field, fmt.Sprintf("expected %s, got %q", expect, vals[len(vals)-1]), true
	}
	return "", "", false
}

// paramErrorPatterns match the messages of grpc-gateway's path and query parsers
// (runtime/query.go and the generated request_* functions); the tests pin them.
var paramErrorPatterns = []struct {
	re       *regexp.Regexp
	describe func(m []string) string
	query    bool // a query value that failed to parse
}{{
	re:       regexp.MustCompile(`^type mismatch, parameter: ([^,\s]+), error: (.*)$`),
	describe: func(m []string) string { return "invalid path parameter: " + m[2] },
}, {
	re:       regexp.MustCompile(`^missing parameter (\S+)$`),
	describe: func([]string) string { return "missing path parameter" },
}, {
	re:       regexp.MustCompile(`^(?:parsing field|parsing list|parsing map key|parsing map value) "([^"]+)": (.*)$`),
	describe: func(m []string) string { return "invalid query parameter: " + m[2] },
	query:    true,
}, {
	re:       regexp.MustCompile(`^(?:too many values for field|duplicate field) "([^"]+)"`),
	describe: func([]string) string { return "query parameter given more than once" },
}, {
	re:       regexp.MustCompile(`^invalid (grpc-timeout): (.*)$`),
	describe: func([]string) string { return "invalid Grpc-Timeout header" },
}}

// reasonForCode gives a documented reason to statuses that reach the gateway
// without one: those made by grpc-go itself (an upstream that is down) or by a
// library interceptor.
var reasonForCode = map[codes.Code]errorsv1.ErrorReason{
	codes.InvalidArgument:    errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
	codes.OutOfRange:         errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
	codes.Unauthenticated:    errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN,
	codes.PermissionDenied:   errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
	codes.NotFound:           errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND,
	codes.AlreadyExists:      errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS,
	codes.FailedPrecondition: errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
	codes.ResourceExhausted:  errorsv1.ErrorReason_ERROR_REASON_RATE_LIMITED,
	codes.Unimplemented:      errorsv1.ErrorReason_ERROR_REASON_UNIMPLEMENTED,
	codes.Unavailable:        errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE,
	codes.DeadlineExceeded:   errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE,
	codes.Internal:           errorsv1.ErrorReason_ERROR_REASON_INTERNAL,
	codes.Unknown:            errorsv1.ErrorReason_ERROR_REASON_INTERNAL,
	codes.DataLoss:           errorsv1.ErrorReason_ERROR_REASON_INTERNAL,
}

// normalise passes a service's error through unchanged when it carries an
// ErrorInfo, as every error of our services does. Otherwise it adds one, and for
// server-side failures it replaces the message: grpc-go's transport messages name
// internal addresses, which clients have no business seeing.
func (g *Gateway) normalise(ctx context.Context, r *http.Request, s *status.Status) *status.Status {
	for _, d := range s.Details() {
		if _, ok := d.(*errdetails.ErrorInfo); ok {
			g.log(ctx, r, s, "")
			return s
		}
	}
	reason, ok := reasonForCode[s.Code()]
	if !ok {
		g.log(ctx, r, s, "")
		return s
	}
	msg := s.Message()
	switch s.Code() {
	case codes.Unavailable:
		msg = "the service is unavailable; retry with backoff"
	case codes.DeadlineExceeded:
		msg = "the service did not answer in time"
	case codes.Internal, codes.Unknown, codes.DataLoss:
		msg = "internal error"
	}
	g.log(ctx, r, s, msg)
	out := newStatus(s.Code(), reason, msg)
	if len(s.Proto().GetDetails()) > 0 {
		p := out.Proto()
		p.Details = append(p.Details, s.Proto().GetDetails()...)
		out = status.FromProto(p)
	}
	return out
}

// log records server-side failures with the request id, which is all a client can
// quote when reporting one.
func (g *Gateway) log(ctx context.Context, r *http.Request, s *status.Status, maskedAs string) {
	level := slog.LevelDebug
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		level = slog.LevelWarn
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	}
	if !g.logger.Enabled(ctx, level) {
		return
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "code", s.Code().String(), "err", s.Message()}
	if st := stateFrom(r.Context()); st != nil {
		attrs = append(attrs, "request_id", st.id)
	}
	if rpc, ok := runtime.RPCMethod(ctx); ok {
		attrs = append(attrs, "rpc", rpc)
	}
	if maskedAs != "" && maskedAs != s.Message() {
		attrs = append(attrs, "client_message", maskedAs)
	}
	g.logger.Log(ctx, level, "gateway request failed", attrs...)
}

// handleRoutingError answers paths and methods no route matches, in the same
// error format as everything else.
func (g *Gateway) handleRoutingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var s *status.Status
	switch httpStatus {
	case http.StatusNotFound:
		s = newStatus(codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND,
			fmt.Sprintf("no such path: %s", r.URL.Path))
	case http.StatusMethodNotAllowed:
		// There is no method-not-allowed reason; UNIMPLEMENTED is the nearest.
		s = newStatus(codes.Unimplemented, errorsv1.ErrorReason_ERROR_REASON_UNIMPLEMENTED,
			fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path))
	default:
		s = (&requestError{
			reason:      errorsv1.ErrorReason_ERROR_REASON_MALFORMED_REQUEST,
			field:       "path",
			description: "the request path is malformed",
		}).status()
		httpStatus = http.StatusBadRequest
	}
	g.writeStatus(w, r, s, runtime.ServerMetadata{}, httpStatus)
}

// errorJSON renders error bodies. Unlike responses, they leave out empty fields,
// so a field violation is not padded with empty "reason" and "localized_message"
// members; "details" is always present since every error has an ErrorInfo.
var errorJSON = protojson.MarshalOptions{UseProtoNames: true}

// writeStatus writes the google.rpc.Status body grpc-gateway clients expect.
// httpStatus zero means the status that grpc-gateway maps the code to.
func (g *Gateway) writeStatus(w http.ResponseWriter, _ *http.Request, s *status.Status, md runtime.ServerMetadata, httpStatus int) {
	if httpStatus == 0 {
		httpStatus = runtime.HTTPStatusFromCode(s.Code())
	}
	h := w.Header()
	h.Del("Trailer")
	h.Del("Transfer-Encoding")
	h.Del("Content-Length")
	// A failed call's header metadata often arrives as trailers (gRPC sends a
	// trailers-only response when a handler fails before sending headers), so
	// both are searched for the headers clients rely on, such as Retry-After.
	copyForwardedHeaders(h, md.HeaderMD, md.TrailerMD)
	if httpStatus == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
		h.Set("Retry-After", retryAfter(s))
	}
	if s.Code() == codes.Unauthenticated {
		h.Set("WWW-Authenticate", `Bearer realm="manushya"`)
	}

	body, err := errorJSON.Marshal(s.Proto())
	if err != nil {
		g.logger.Error("marshal error response", "err", err)
		body = []byte(`{"code":13,"message":"internal error","details":[]}`)
		httpStatus = http.StatusInternalServerError
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

// retryAfter is the delay a RetryInfo detail asks for, in whole seconds, or one
// second when the service gave none: a 429 always says when to come back.
func retryAfter(s *status.Status) string {
	for _, d := range s.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			secs := math.Ceil(ri.GetRetryDelay().AsDuration().Seconds())
			return strconv.Itoa(max(1, int(secs)))
		}
	}
	return "1"
}

// forwardedHeaders are the response metadata keys a client sees as HTTP headers,
// under their usual spelling.
var forwardedHeaders = map[string]string{
	"ratelimit-policy":      "RateLimit-Policy",
	"ratelimit":             "RateLimit",
	"x-ratelimit-limit":     "X-RateLimit-Limit",
	"x-ratelimit-remaining": "X-RateLimit-Remaining",
	"x-ratelimit-reset":     "X-RateLimit-Reset",
	"retry-after":           "Retry-After",
	// The file name of a download (usage and identity exports).
	"content-disposition": "Content-Disposition",
	// The single sign-on start binds the sign-in to the browser with a cookie.
	"set-cookie": "Set-Cookie",
}

// outgoingHeader is the mux's outgoing header matcher. Everything else a service
// puts in its header metadata stays between the gateway and the service.
func outgoingHeader(key string) (string, bool) {
	name, ok := forwardedHeaders[strings.ToLower(key)]
	return name, ok
}

func copyForwardedHeaders(h http.Header, mds ...metadata.MD) {
	for key, name := range forwardedHeaders {
		for _, md := range mds {
			if vals := md.Get(key); len(vals) > 0 {
				h.Del(name)
				for _, v := range vals {
					h.Add(name, v)
				}
				break
			}
		}
	}
}
