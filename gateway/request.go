package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/google/uuid"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// Header and metadata names the gateway handles itself.
const (
	headerRequestID = "X-Request-Id"
	mdRequestID     = "x-request-id"
	mdAPIKey        = "x-api-key"
	mdForwardedFor  = "x-forwarded-for"
)

// requestState follows one HTTP request through grpc-gateway, whose hooks
// (decoder, error handler, client interceptor) otherwise only see a message string.
// All hooks of a unary call run on the request's goroutine, so no locking is needed.
type requestState struct {
	id string
	// upstreamCalled is set once the request reaches the gRPC client: an
	// InvalidArgument before that was produced by the gateway's own parsing.
	upstreamCalled bool
	// decodeErr is the body decoding problem, described field by field.
	decodeErr *requestError
}

type stateKey struct{}

func stateFrom(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}

// limitedBody caps the request body and lets the decoder find the request state:
// grpc-gateway hands the decoder only req.Body.
type limitedBody struct {
	io.ReadCloser
	state *requestState
}

func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(headerRequestID)
	if !validRequestID(id) {
		id = newRequestID()
	}
	// Set before routing so that every answer, errors included, carries it.
	w.Header().Set(headerRequestID, id)

	st := &requestState{id: id}
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))

	// Collection paths have no trailing slash in the protos, while the REST
	// contract accepts both forms.
	if p := r.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") {
		u := *r.URL
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = strings.TrimSuffix(u.RawPath, "/")
		r.URL = &u
	}

	if rawStream(r) {
		// Exports are files whose bytes are signed (a zip, JSON lines): their
		// chunks must reach the client as sent, without the newline grpc-gateway
		// writes after each streamed message.
		r.Header.Set("Accept", mimeRawStream)
	}

	if r.ContentLength > g.maxBody {
		g.writeStatus(w, r, bodyTooLarge(g.maxBody).status(), runtime.ServerMetadata{}, 0)
		return
	}
	if r.Body != nil {
		r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, g.maxBody), state: st}
	}
	g.mux.ServeHTTP(w, r)
}

// validRequestID accepts short printable ids, as the services' request-id
// interceptor does, since the id ends up in every log line.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	if id, err := uuid.NewV7(); err == nil {
		return id.String()
	}
	return uuid.NewString()
}

// incomingHeader decides which request headers become metadata. Authorization
// is forwarded unprefixed by grpc-gateway itself, X-Forwarded-For/Host are derived
// by grpc-gateway, and the request id and client address are set by annotate, so
// none of them is passed twice.
func incomingHeader(key string) (string, bool) {
	switch textproto.CanonicalMIMEHeaderKey(key) {
	case "X-Api-Key":
		return mdAPIKey, true
	case "Authorization", headerRequestID:
		return "", false
	}
	// Permanent headers (User-Agent, Accept-Language, Cookie, ...) arrive as
	// "grpcgateway-<name>". User-Agent cannot travel as "user-agent": gRPC reserves
	// that name for its own client and drops application values.
	return runtime.DefaultHeaderMatcher(key)
}

// annotate adds the metadata the gateway itself vouches for. grpc-gateway lets
// these values replace any the client tried to send under the same keys.
func annotate(ctx context.Context, r *http.Request) metadata.MD {
	md := metadata.MD{}
	if st := stateFrom(ctx); st != nil {
		md.Set(mdRequestID, st.id)
	}
	if addr := clientAddress(r); addr != "" {
		md.Set(mdForwardedFor, addr)
	}
	return md
}

// clientAddress is the first X-Forwarded-For entry when there is one, else the
// peer address. The first entry is only trustworthy when the gateway sits behind a
// proxy that overwrites the header, which is how it is deployed.
func clientAddress(r *http.Request) string {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		first, _, _ := strings.Cut(xff, ",")
		if first = strings.TrimSpace(first); first != "" && printableASCII(first) {
			return first
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func markUpstreamUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if st := stateFrom(ctx); st != nil {
		st.upstreamCalled = true
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func markUpstreamStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if st := stateFrom(ctx); st != nil {
		st.upstreamCalled = true
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// unconfigured stands in for the connection of an upstream the Config does not
// name, so its routes still exist and say why they cannot answer.
type unconfigured struct{ area string }

func (u unconfigured) err() error {
	return newStatus(codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE,
		"the "+u.area+" service is not configured on this gateway").Err()
}

func (u unconfigured) Invoke(context.Context, string, any, any, ...grpc.CallOption) error {
	return u.err()
}

func (u unconfigured) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, u.err()
}
