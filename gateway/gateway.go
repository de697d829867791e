package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
)

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes is zero.
const DefaultMaxBodyBytes int64 = 1 << 20

// Config says where the services are and how to reach them.
type Config struct {
	// Upstreams maps a service area to the gRPC address that serves it. Keys are
	// the Upstream* constants; areas left out answer 503 UNAVAILABLE, so a partial
	// deployment fails loudly per request rather than with a 404 that looks like a
	// wrong URL.
	Upstreams map[string]string
	// MaxBodyBytes caps a request body; larger bodies are refused with a 400.
	// Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// DialOptions are used for every upstream connection: transport credentials,
	// stats handlers and interceptors. The caller must supply transport credentials
	// (grpc.NewClient refuses to dial without them).
	DialOptions []grpc.DialOption
}

// Gateway serves the REST API by forwarding to the gRPC services.
type Gateway struct {
	logger    *slog.Logger
	mux       *runtime.ServeMux
	marshaler runtime.Marshaler
	maxBody   int64
	conns     []*grpc.ClientConn

	openapi []byte // the OpenAPI document as served

	// jwks and openIDConfig produce the /.well-known documents; nil answers 503.
	jwks         wellKnownSource
	openIDConfig wellKnownSource
}

// New dials every distinct upstream address once and registers the REST handlers
// of every service in the routes table. Dialing is lazy (grpc.NewClient), so New
// succeeds while upstreams are still starting; requests to an upstream that is down
// answer 503.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Gateway, error) {
	if logger == nil {
		logger = slog.Default()
	}
	maxBody := cfg.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	for key := range cfg.Upstreams {
		if !slices.Contains(upstreamKeys, key) {
			return nil, fmt.Errorf("gateway: unknown upstream %q (want one of %v)", key, upstreamKeys)
		}
	}

	openapiDoc, err := rewriteOpenAPI()
	if err != nil {
		return nil, fmt.Errorf("gateway: prepare openapi document: %w", err)
	}

	g := &Gateway{
		logger:    logger,
		marshaler: newMarshaler(),
		maxBody:   maxBody,
		openapi:   openapiDoc,
	}
	g.mux = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, g.marshaler),
		runtime.WithMarshalerOption(mimeRawStream, rawStreamMarshaler{g.marshaler}),
		runtime.WithErrorHandler(g.handleError),
		runtime.WithRoutingErrorHandler(g.handleRoutingError),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		// Trailers would only reach clients that send "TE: trailers"; the headers a
		// client needs are copied by outgoingHeader and, for errors, handleError.
		runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithMetadata(annotate),
		runtime.WithForwardResponseOption(redirectOnURL),
		runtime.WithWriteContentLength(),
	)

	dialOpts := append(slices.Clone(cfg.DialOptions),
		grpc.WithChainUnaryInterceptor(markUpstreamUnary),
		grpc.WithChainStreamInterceptor(markUpstreamStream),
	)
	byAddr := map[string]grpc.ClientConnInterface{}
	missing := map[string]bool{}
	upstream := func(key string) (grpc.ClientConnInterface, error) {
		addr := cfg.Upstreams[key]
		if addr == "" {
			missing[key] = true
			return unconfigured{area: key}, nil
		}
		if cc, ok := byAddr[addr]; ok {
			return cc, nil
		}
		conn, err := grpc.NewClient(addr, dialOpts...)
		if err != nil {
			return nil, fmt.Errorf("gateway: dial %s upstream %s: %w", key, addr, err)
		}
		g.conns = append(g.conns, conn)
		byAddr[addr] = conn
		return conn, nil
	}
	identity, err := upstream(UpstreamIdentity)
	if err != nil {
		return nil, err
	}
	g.jwks, g.openIDConfig = identityDocuments(identity)

	// Our own routes go first: grpc-gateway tries the most recently registered
	// pattern first, so a service that later binds one of these paths itself (for
	// example GET /.well-known/jwks.json) takes it over without a change here.
	if err := g.registerDocuments(); err != nil {
		_ = g.Close()
		return nil, err
	}
	for _, rt := range routes {
		cc, err := upstream(rt.upstream)
		if err == nil {
			err = rt.register(ctx, g.mux, cc)
		}
		if err != nil {
			_ = g.Close()
			return nil, fmt.Errorf("gateway: register %s: %w", rt.service, err)
		}
	}

	for _, key := range sortedKeys(missing) {
		logger.WarnContext(ctx, "gateway upstream not configured; its routes answer 503", "upstream", key)
	}
	return g, nil
}

// Handler serves everything under /v1/ and /.well-known/. Mount it for those
// prefixes; other paths answer 404 in the API's error format.
func (g *Gateway) Handler() http.Handler {
	return http.HandlerFunc(g.serveHTTP)
}

// Close closes the upstream connections.
func (g *Gateway) Close() error {
	var errs []error
	for _, conn := range g.conns {
		if err := conn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	g.conns = nil
	return errors.Join(errs...)
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
