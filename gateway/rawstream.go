package gateway

import (
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"
)

// mimeRawStream selects rawStreamMarshaler. It is an internal name: serveHTTP
// sets it as the Accept header of the requests rawStream matches, since
// grpc-gateway picks a response marshaler by Accept and has no per-route choice.
const mimeRawStream = "application/x-manushya-raw-stream"

// rawStreamMarshaler is the gateway's marshaler without the delimiter between
// streamed messages: each google.api.HttpBody chunk is written exactly as the
// service sent it. Errors are still JSON.
type rawStreamMarshaler struct {
	runtime.Marshaler
}

// Delimiter implements runtime.Delimited: nothing between chunks.
func (rawStreamMarshaler) Delimiter() []byte { return nil }

// Marshal implements runtime.Marshaler. A streaming call's error (a refusal
// arrives with the first message a client reads) is written by grpc-gateway as
// {"error": status}; here it becomes the status itself, the body every other
// error of the API has.
func (m rawStreamMarshaler) Marshal(v any) ([]byte, error) {
	if chunk, ok := v.(map[string]proto.Message); ok && len(chunk) == 1 {
		if st, ok := chunk["error"]; ok {
			return errorJSON.Marshal(st)
		}
	}
	return m.Marshaler.Marshal(v)
}

// rawStream reports whether r asks for a streamed file whose bytes must arrive
// unchanged: the identity data exports, GET /v1/identity/{id}/export and
// /v1/identity/me/export (the trailing slash already removed). Other streamed
// downloads (usage CSV) keep the newline after each chunk their contract
// describes.
func rawStream(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/identity/")
	if !ok {
		return false
	}
	id, tail, ok := strings.Cut(rest, "/")
	return ok && id != "" && tail == "export"
}
