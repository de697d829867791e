package gateway

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/encoding/protojson"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

var testJSONPb = &runtime.JSONPb{UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false}}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		into   func() any
		reason string
		field  string
		desc   string
	}{
		{
			name: "map value of the wrong type", body: `{"reason":"r","metadata":{"region":"eu","zone":5}}`,
			into:   func() any { return &errdetails.ErrorInfo{} },
			reason: "ERROR_REASON_MALFORMED_REQUEST", field: `metadata["zone"]`, desc: "expected a string, got 5",
		},
		{
			name: "unknown key inside a struct is fine, outside is not", body: `{"claims":{"a":{"b":1}},"x":{"claims":1}}`,
			into:   func() any { return &identityv1.CreateIdentityRequest{} },
			reason: "ERROR_REASON_UNKNOWN_FIELD", field: "x", desc: "unknown field",
		},
		{
			name: "position on a later line with multibyte text", body: "{\n  \"claims\": {\"name\": \"Jörg Müller\"},\n  \"role\": 1\n}",
			into:   func() any { return &identityv1.CreateIdentityRequest{} },
			reason: "ERROR_REASON_MALFORMED_REQUEST", field: "role", desc: "expected a string, got 1",
		},
		{
			name: "nested message by json name", body: `{"identity":{"externalId":"a","createTime":"soon"}}`,
			into:   func() any { return &identityv1.UpdateIdentityRequest{} },
			reason: "ERROR_REASON_MALFORMED_REQUEST", field: "identity.create_time", desc: `got "soon"`,
		},
		{
			name: "field mask", body: `{"identity":{},"update_mask":5}`,
			into:   func() any { return &identityv1.UpdateIdentityRequest{} },
			reason: "ERROR_REASON_MALFORMED_REQUEST", field: "update_mask", desc: "comma-separated list of field names",
		},
		{
			name: "body bound to a message field", body: `{"id":"x","roles":[1]}`,
			into:   func() any { var id *identityv1.Identity; return &id },
			reason: "ERROR_REASON_MALFORMED_REQUEST", field: "roles[0]", desc: "expected a string, got 1",
		},
		{
			name: "long values are shortened", body: `{"issue_token":"` + strings.Repeat("a", 100) + `"}`,
			into:   func() any { return &identityv1.CreateIdentityRequest{} },
			reason: "ERROR_REASON_MALFORMED_REQUEST", field: "issue_token", desc: `got "` + strings.Repeat("a", 63) + "…",
		},
		{
			name: "array for a string", body: `{"role":["admin"]}`,
			into:   func() any { return &identityv1.CreateIdentityRequest{} },
			reason: "ERROR_REASON_MALFORMED_REQUEST", field: "role", desc: "expected a string, got an array",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := decodeJSON([]byte(tt.body), tt.into(), testJSONPb)
			re, ok := errors.AsType[*requestError](err)
			require.True(t, ok, "got %v", err)
			require.Equal(t, tt.reason, re.reason.String())
			require.Equal(t, tt.field, re.field)
			require.Contains(t, re.description, tt.desc)
		})
	}
}

func TestDecodeBodyBoundToMessageField(t *testing.T) {
	t.Parallel()
	var id *identityv1.Identity
	require.NoError(t, decodeJSON([]byte(`{"external_id":"a","claims":{"k":"v"}}`), &id, testJSONPb))
	require.Equal(t, "a", id.GetExternalId())
	require.ErrorIs(t, decodeJSON([]byte(" \n"), &id, testJSONPb), io.EOF)
}

func TestJSONPathAt(t *testing.T) {
	t.Parallel()
	data := []byte(`{"a": [1, {"b": "x\"y", "c": [true, null]}], "d": {}}`)
	tests := []struct {
		at   string // the text at the offset looked up
		want string
	}{
		{`"a"`, "a"},
		{`[1,`, "a"},
		{`1,`, "a[0]"},
		{`{"b"`, "a[1]"},
		{`"b"`, "a[1].b"},
		{`"x\"y"`, "a[1].b"},
		{`true`, "a[1].c[0]"},
		{`null`, "a[1].c[1]"},
		{`"d"`, "d"},
		{`{}}`, "d"},
	}
	for _, tt := range tests {
		off := indexOf(data, tt.at)
		require.GreaterOrEqual(t, off, 0, tt.at)
		segs, ok := jsonPathAt(data, off)
		require.True(t, ok, tt.at)
		name, _, _ := resolvePath(nil, segs)
		require.Equal(t, tt.want, name, tt.at)
	}
	// Offsets inside a token or in whitespace are not the start of anything.
	_, ok := jsonPathAt(data, indexOf(data, `"x\"y"`)+2)
	require.False(t, ok)
	_, ok = jsonPathAt(data, len(data))
	require.False(t, ok)
}

func indexOf(data []byte, s string) int {
	for i := range len(data) - len(s) + 1 {
		if string(data[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}

// FuzzDecodeJSON checks that no body makes decoding panic and that every
// failure is described with a reason, as a 400 needs.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{"external_id":"a","claims":{"x":[1,{"y":null}]}}`,
		`{"external_id":5}`, `{"kind":"ROBOT"}`, `{"roles":"a"}`, `{"nope":1}`,
		`{"external_id":`, `[]`, `null`, `"\u00e9"`, "{\"claims\":{\"\\ud800\":1}}",
		`{"identities":[{"kind":1},{"kind":"X"}]}`, `{"idempotency_key":"k","issue_token":"true"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, into := range []any{&identityv1.CreateIdentityRequest{}, &identityv1.BulkCreateIdentitiesRequest{}} {
			err := decodeJSON(body, into, testJSONPb)
			if err == nil || errors.Is(err, io.EOF) {
				continue
			}
			re, ok := errors.AsType[*requestError](err)
			if !ok {
				t.Fatalf("error %v (%T) is not a requestError", err, err)
			}
			if re.reason == 0 || re.description == "" {
				t.Fatalf("undescribed error %+v", re)
			}
			_ = re.status()
		}
	})
}

// FuzzJSONPathAt checks the path scanner on arbitrary input and offsets.
func FuzzJSONPathAt(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"c"}]}`), 9)
	f.Add([]byte(`[[[[`), 2)
	f.Add([]byte(`{"a\`), 1)
	f.Fuzz(func(t *testing.T, data []byte, off int) {
		segs, ok := jsonPathAt(data, off)
		if ok {
			_, _, _ = resolvePath((&identityv1.BulkCreateIdentitiesRequest{}).ProtoReflect().Descriptor(), segs)
		}
	})
}

// TestDecodeShortEnumNames: an enum value may be written short and in lower case,
// at the top level, in lists and in nested messages; a short name the enum does
// not have is still refused, naming the field.
func TestDecodeShortEnumNames(t *testing.T) {
	t.Parallel()
	var search memoryv1.SearchMemoriesRequest
	require.NoError(t, decodeJSON([]byte(`{"query":"retirement planning","mode":"hybrid"}`), &search, testJSONPb))
	require.Equal(t, memoryv1.SearchMode_SEARCH_MODE_HYBRID, search.GetMode())
	require.Equal(t, "retirement planning", search.GetQuery())

	var full memoryv1.SearchMemoriesRequest
	require.NoError(t, decodeJSON([]byte(`{"mode":"SEARCH_MODE_VECTOR"}`), &full, testJSONPb))
	require.Equal(t, memoryv1.SearchMode_SEARCH_MODE_VECTOR, full.GetMode())

	var nested memoryv1.SearchMemoriesRequest
	require.NoError(t, decodeJSON([]byte(`{"query":"q","filter":{"all_of":[
		{"condition":{"field":"metadata.client_id","op":"eq","value":"CS001"}},
		{"none_of":[{"condition":{"field":"type","op":"in","value":["a","b"]}}]}]}}`), &nested, testJSONPb))
	all := nested.GetFilter().GetAllOf()
	require.Equal(t, memoryv1.FilterCondition_OPERATOR_EQ, all[0].GetCondition().GetOp())
	require.Equal(t, memoryv1.FilterCondition_OPERATOR_IN, all[1].GetNoneOf()[0].GetCondition().GetOp())

	var export identityv1.ExportMeRequest
	require.NoError(t, decodeJSON([]byte(`{"format":"zip"}`), &export, testJSONPb))
	require.Equal(t, identityv1.ExportFormat_EXPORT_FORMAT_ZIP, export.GetFormat())

	var bad memoryv1.SearchMemoriesRequest
	err := decodeJSON([]byte(`{"mode":"semantic"}`), &bad, testJSONPb)
	var re *requestError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "mode", re.field)
	require.Contains(t, re.description, `"semantic"`)
	require.Equal(t, memoryv1.SearchMode_SEARCH_MODE_UNSPECIFIED, bad.GetMode(), "nothing half-decoded")
}
