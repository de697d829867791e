package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/pb/openapi"
)

// docsFS holds the API reference page. It is plain HTML, CSS and JavaScript
// written for this project; it fetches /v1/openapi.json and loads nothing else.
//
//go:embed docs/index.html docs/docs.css docs/docs.js
var docsFS embed.FS

// docsCSP lets the page use only what this server serves.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// wellKnownSource produces a /.well-known document; it calls the identity
// service with the request's context. r is the request being answered, for
// documents that name URLs of this server.
type wellKnownSource func(ctx context.Context, r *http.Request) ([]byte, error)

// identityDocuments returns the sources of /.well-known/jwks.json and
// /.well-known/openid-configuration, from AuthService.GetJwks and
// AuthService.GetOpenIdConfiguration.
func identityDocuments(cc grpc.ClientConnInterface) (jwks, openIDConfig wellKnownSource) {
	auth := identityv1.NewAuthServiceClient(cc)
	jwks = func(ctx context.Context, _ *http.Request) ([]byte, error) {
		resp, err := auth.GetJwks(ctx, &identityv1.GetJwksRequest{})
		if err != nil {
			return nil, err
		}
		keys := make([]proto.Message, 0, len(resp.GetKeys()))
		for _, k := range resp.GetKeys() {
			keys = append(keys, k)
		}
		return jwksJSON(keys)
	}
	openIDConfig = func(ctx context.Context, r *http.Request) ([]byte, error) {
		resp, err := auth.GetOpenIdConfiguration(ctx, &identityv1.GetOpenIdConfigurationRequest{})
		if err != nil {
			return nil, err
		}
		return openIDConfigJSON(resp, requestOrigin(r))
	}
	return jwks, openIDConfig
}

// openIDConfigJSON renders the discovery document. The identity service gives
// paths instead of URLs when its issuer name is not a URL; discovery clients need
// absolute URLs, so those are resolved against origin, the address this request
// reached. Empty lists are kept: response_types_supported is required even when
// it is empty.
func openIDConfigJSON(resp *identityv1.GetOpenIdConfigurationResponse, origin string) ([]byte, error) {
	doc := proto.CloneOf(resp)
	for _, u := range []*string{&doc.JwksUri, &doc.LoginEndpoint, &doc.RefreshEndpoint} {
		if strings.HasPrefix(*u, "/") {
			*u = origin + *u
		}
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("marshal openid configuration: %w", err)
	}
	return b, nil
}

// requestOrigin is the scheme and host the client used. Only the Host header is
// trusted, not X-Forwarded-*: the document is cacheable, and caches key on the
// host. Behind a TLS-terminating proxy, set auth.token_issuer to the public URL.
func requestOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// jwksJSON renders keys (JWK messages whose proto field names are the JWK member
// names: kty, crv, x, kid, ...) as a JWK Set. Unset fields are left out, since a
// JWK carries only the members of its key type.
func jwksJSON(keys []proto.Message) ([]byte, error) {
	opts := protojson.MarshalOptions{UseProtoNames: true}
	set := struct {
		Keys []json.RawMessage `json:"keys"`
	}{Keys: make([]json.RawMessage, 0, len(keys))}
	for _, k := range keys {
		b, err := opts.Marshal(k)
		if err != nil {
			return nil, fmt.Errorf("marshal jwk: %w", err)
		}
		set.Keys = append(set.Keys, b)
	}
	return json.Marshal(set)
}

type document struct {
	path, file, contentType string
	body                    []byte
	headers                 map[string]string
}

// registerDocuments adds the gateway's own GET routes to the mux.
func (g *Gateway) registerDocuments() error {
	docs := []document{
		{path: "/v1/openapi.json", contentType: "application/json", body: g.openapi},
		{path: "/v1/docs", file: "docs/index.html", contentType: "text/html; charset=utf-8"},
		{path: "/v1/docs/docs.css", file: "docs/docs.css", contentType: "text/css; charset=utf-8"},
		{path: "/v1/docs/docs.js", file: "docs/docs.js", contentType: "text/javascript; charset=utf-8"},
	}
	for _, d := range docs {
		if d.file != "" {
			b, err := docsFS.ReadFile(d.file)
			if err != nil {
				return fmt.Errorf("gateway: read %s: %w", d.file, err)
			}
			d.body = b
			d.headers = map[string]string{
				"Content-Security-Policy": docsCSP,
				"Referrer-Policy":         "no-referrer",
			}
		}
		if err := g.handleGet(d.path, g.serveDocument(d)); err != nil {
			return err
		}
	}
	if err := g.handleGet("/.well-known/jwks.json", g.serveWellKnown(g.jwks,
		"the signing keys are not published yet: the identity service does not provide them")); err != nil {
		return err
	}
	return g.handleGet("/.well-known/openid-configuration", g.serveWellKnown(g.openIDConfig,
		"the OpenID configuration is not published yet: the identity service does not provide it"))
}

// handleGet registers h for GET and HEAD.
func (g *Gateway) handleGet(path string, h runtime.HandlerFunc) error {
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		if err := g.mux.HandlePath(method, path, h); err != nil {
			return fmt.Errorf("gateway: route %s %s: %w", method, path, err)
		}
	}
	return nil
}

func (g *Gateway) serveDocument(d document) runtime.HandlerFunc {
	tag := etag(d.body)
	return func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		h := w.Header()
		h.Set("Content-Type", d.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		// Revalidate every time: the ETag makes that cheap, and a new release is
		// seen at once.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", tag)
		for k, v := range d.headers {
			h.Set(k, v)
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(d.body))
	}
}

// serveWellKnown serves src's document, or 503 with unavailable as the message
// while there is no source.
func (g *Gateway) serveWellKnown(src wellKnownSource, unavailable string) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		if src == nil {
			g.writeStatus(w, r, newStatus(codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE, unavailable),
				runtime.ServerMetadata{}, 0)
			return
		}
		ctx, err := runtime.AnnotateContext(r.Context(), g.mux, r, "")
		if err != nil {
			g.handleError(r.Context(), g.mux, g.marshaler, w, r, err)
			return
		}
		body, err := src(ctx, r)
		if err != nil {
			g.handleError(ctx, g.mux, g.marshaler, w, r, err)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		// Verifiers cache the keys; rotation publishes the next key ahead of use.
		h.Set("Cache-Control", "public, max-age=300")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}
}

// rewriteOpenAPI prepares the merged document for serving: no "host" (clients use
// the host they reached us at) and a proper title. Everything else is kept as
// generated, in the generator's key order.
func rewriteOpenAPI() ([]byte, error) {
	out, err := editObject(openapi.JSON, func(key string, val json.RawMessage) (json.RawMessage, bool, error) {
		switch key {
		case "host":
			return nil, false, nil
		case "info":
			info, err := setMember(val, "title", "Manushya API")
			return info, true, err
		}
		return val, true, nil
	})
	if err != nil {
		return nil, err
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, out, "", "  "); err != nil {
		return nil, err
	}
	indented.WriteByte('\n')
	return indented.Bytes(), nil
}

// setMember sets one string member of a JSON object, keeping the others in order.
func setMember(obj json.RawMessage, name, value string) (json.RawMessage, error) {
	quoted, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	found := false
	out, err := editObject(obj, func(key string, val json.RawMessage) (json.RawMessage, bool, error) {
		if key == name {
			found = true
			return quoted, true, nil
		}
		return val, true, nil
	})
	if err != nil || found {
		return out, err
	}
	// Not there: append it before the closing brace.
	out = bytes.TrimSuffix(out, []byte("}"))
	if len(out) > 1 {
		out = append(out, ',')
	}
	key, _ := json.Marshal(name)
	out = append(append(append(out, key...), ':'), quoted...)
	return append(out, '}'), nil
}

// editObject rewrites the members of a JSON object in order: edit returns the new
// value and whether to keep the member.
func editObject(obj []byte, edit func(key string, val json.RawMessage) (json.RawMessage, bool, error)) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("expected a JSON object")
	}
	out := []byte{'{'}
	first := true
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, err
		}
		val, keep, err := edit(key, val)
		if err != nil {
			return nil, err
		}
		if !keep {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		k, _ := json.Marshal(key)
		out = append(append(append(out, k...), ':'), val...)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return append(out, '}'), nil
}

func etag(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}
