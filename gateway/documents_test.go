package gateway

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/pb/openapi"
)

func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	b := setup(t)

	resp, body := send(t, http.MethodGet, b.url+"/v1/openapi.json/", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	var served, generated map[string]any
	require.NoError(t, json.Unmarshal(body, &served))
	require.NoError(t, json.Unmarshal(openapi.JSON, &generated))
	// Exactly two changes: no host, our title.
	delete(generated, "host")
	generated["info"].(map[string]any)["title"] = "Manushya API"
	require.Equal(t, generated, served)

	// Keys keep the generator's order, so the document reads as generated.
	require.Less(t, strings.Index(string(body), `"swagger"`), strings.Index(string(body), `"paths"`))

	etag := resp.Header.Get("ETag")
	require.NotEmpty(t, etag)
	resp, _ = send(t, http.MethodGet, b.url+"/v1/openapi.json", nil, http.Header{"If-None-Match": {etag}})
	require.Equal(t, http.StatusNotModified, resp.StatusCode)

	resp, _ = send(t, http.MethodHead, b.url+"/v1/openapi.json", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestSetMember(t *testing.T) {
	t.Parallel()
	out, err := setMember(json.RawMessage(`{"version":"1"}`), "title", "T")
	require.NoError(t, err)
	require.JSONEq(t, `{"version":"1","title":"T"}`, string(out))
	out, err = setMember(json.RawMessage(`{}`), "title", "T")
	require.NoError(t, err)
	require.JSONEq(t, `{"title":"T"}`, string(out))
}

var assetRef = regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`)

// TestDocsPage checks that the reference page and its assets are served and
// that nothing on it comes from another host.
func TestDocsPage(t *testing.T) {
	t.Parallel()
	b := setup(t)

	resp, page := send(t, http.MethodGet, b.url+"/v1/docs/", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	csp := resp.Header.Get("Content-Security-Policy")
	require.Contains(t, csp, "default-src 'none'")
	require.Contains(t, csp, "script-src 'self'")
	require.Contains(t, csp, "connect-src 'self'")

	refs := assetRef.FindAllStringSubmatch(string(page), -1)
	require.NotEmpty(t, refs)
	var assets []string
	for _, m := range refs {
		ref := m[1]
		switch {
		case strings.HasPrefix(ref, "#"), ref == "data:,":
		case strings.HasPrefix(ref, "/") && !strings.HasPrefix(ref, "//"):
			assets = append(assets, ref)
		default:
			t.Errorf("the page refers to %q, which is not served by the gateway", ref)
		}
	}
	require.Contains(t, assets, "/v1/docs/docs.css")
	require.Contains(t, assets, "/v1/docs/docs.js")

	types := map[string]string{
		"/v1/docs/docs.css": "text/css; charset=utf-8",
		"/v1/docs/docs.js":  "text/javascript; charset=utf-8",
	}
	for path, contentType := range types {
		resp, body := send(t, http.MethodGet, b.url+path, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Equal(t, contentType, resp.Header.Get("Content-Type"), path)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
		// No absolute URL at all: no CDN, no web font, no external script.
		require.NotContains(t, string(body), "://", path)
		require.NotContains(t, string(body), "@import", path)
	}
	require.NotContains(t, string(page), "://")

	// Every page link to the gateway's own documents resolves.
	for _, path := range assets {
		if path == "/.well-known/jwks.json" {
			continue // needs the identity service
		}
		resp, _ := send(t, http.MethodGet, b.url+path, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}
