package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// jsonMarshaler is grpc-gateway's JSONPb with a decoder that explains its errors.
type jsonMarshaler struct {
	*runtime.JSONPb
}

// newMarshaler returns the marshaler for every content type. Proto names both
// ways; unpopulated fields emitted so a method's responses always have the same
// keys; unknown fields rejected. HTTPBodyMarshaler lets a method answer with a
// google.api.HttpBody (a file, say) as is.
func newMarshaler() runtime.Marshaler {
	return &runtime.HTTPBodyMarshaler{Marshaler: &jsonMarshaler{JSONPb: &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}}
}

// NewDecoder implements runtime.Marshaler.
func (m *jsonMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return &bodyDecoder{r: r, base: m.JSONPb}
}

// bodyDecoder reads the whole body (bounded by the limit serveHTTP set), so that
// trailing garbage is refused and errors can point at the offending field.
type bodyDecoder struct {
	r    io.Reader
	base *runtime.JSONPb
}

// Decode implements runtime.Decoder. grpc-gateway turns the returned error into a
// bare message; the full description is left in the request state for handleError.
func (d *bodyDecoder) Decode(v any) error {
	err := d.decode(v)
	var re *requestError
	if errors.As(err, &re) {
		if body, ok := d.r.(*limitedBody); ok && body.state != nil {
			body.state.decodeErr = re
		}
	}
	return err
}

func (d *bodyDecoder) decode(v any) error {
	data, err := io.ReadAll(d.r)
	if err != nil {
		if tooLarge, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return bodyTooLarge(tooLarge.Limit)
		}
		return &requestError{
			reason:      errorsv1.ErrorReason_ERROR_REASON_MALFORMED_REQUEST,
			field:       "body",
			description: "the request body could not be read",
		}
	}
	return decodeJSON(data, v, d.base)
}

// decodeJSON decodes a request body into v, describing any failure as a
// requestError. An empty body is io.EOF, which grpc-gateway treats as "no fields".
func decodeJSON(data []byte, v any, base *runtime.JSONPb) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return io.EOF
	}
	if !json.Valid(data) {
		return invalidJSON(data)
	}
	msg, ok := asMessage(v)
	if !ok {
		// A body bound to a non-message field (body: "ids", say).
		if err := base.NewDecoder(bytes.NewReader(data)).Decode(v); err != nil {
			return &requestError{
				reason:      errorsv1.ErrorReason_ERROR_REASON_MALFORMED_REQUEST,
				field:       "body",
				description: cleanProtoError(err.Error()),
			}
		}
		return nil
	}
	if err := base.UnmarshalOptions.Unmarshal(data, msg); err != nil {
		// Enum values may be written short and in lower case ("vector" for
		// SEARCH_MODE_VECTOR), as the REST examples do; only a body that failed
		// pays for the rewrite.
		if short, ok := expandShortEnums(data, msg.ProtoReflect().Descriptor()); ok {
			proto.Reset(msg)
			if base.UnmarshalOptions.Unmarshal(short, msg) == nil {
				return nil
			}
			proto.Reset(msg)
		}
		return describeDecodeError(data, msg.ProtoReflect().Descriptor(), err)
	}
	return nil
}

// expandShortEnums rewrites, in a JSON body for md, every enum value given by its
// short name ("vector", "jsonl") to its full name ("SEARCH_MODE_VECTOR",
// "EXPORT_FORMAT_JSONL"): the enum's prefix, taken from its zero value
// ("SEARCH_MODE_UNSPECIFIED"), followed by the upper-cased short name. It reports
// whether anything changed.
func expandShortEnums(data []byte, md protoreflect.MessageDescriptor) ([]byte, bool) {
	var body map[string]any
	if json.Unmarshal(data, &body) != nil {
		return nil, false
	}
	if !expandInMessage(body, md) {
		return nil, false
	}
	out, err := json.Marshal(body)
	if err != nil {
		return nil, false
	}
	return out, true
}

func expandInMessage(obj map[string]any, md protoreflect.MessageDescriptor) bool {
	changed := false
	fields := md.Fields()
	for key, val := range obj {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(key))
		}
		if fd == nil || fd.IsMap() {
			continue
		}
		one := func(v any) (any, bool) {
			switch fd.Kind() {
			case protoreflect.EnumKind:
				if str, ok := v.(string); ok {
					if full, ok := fullEnumName(fd.Enum(), str); ok {
						return full, true
					}
				}
			case protoreflect.MessageKind, protoreflect.GroupKind:
				if sub, ok := v.(map[string]any); ok {
					return sub, expandInMessage(sub, fd.Message())
				}
			}
			return v, false
		}
		if list, ok := val.([]any); ok && fd.IsList() {
			for i, v := range list {
				if nv, ok := one(v); ok {
					list[i], changed = nv, true
				}
			}
			continue
		}
		if nv, ok := one(val); ok {
			obj[key], changed = nv, true
		}
	}
	return changed
}

// fullEnumName is the full name of short in ed, when short is not a name of ed
// already and the enum's zero value ends in UNSPECIFIED (the convention every
// enum of the API follows).
func fullEnumName(ed protoreflect.EnumDescriptor, short string) (string, bool) {
	values := ed.Values()
	if values.ByName(protoreflect.Name(short)) != nil || values.Len() == 0 {
		return "", false
	}
	zero := string(values.Get(0).Name())
	prefix, ok := strings.CutSuffix(zero, "UNSPECIFIED")
	if !ok {
		return "", false
	}
	full := prefix + strings.ToUpper(strings.ReplaceAll(short, "-", "_"))
	if values.ByName(protoreflect.Name(full)) == nil {
		return "", false
	}
	return full, true
}

// asMessage finds the message to decode into: v itself, or, for a body bound to a
// message field (body: "identity"), the field that v points to, allocated here.
func asMessage(v any) (proto.Message, bool) {
	if m, ok := v.(proto.Message); ok {
		return m, true
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, false
	}
	field := rv.Elem()
	if field.Kind() != reflect.Pointer || !field.Type().Implements(messageType) {
		return nil, false
	}
	if field.IsNil() {
		field.Set(reflect.New(field.Type().Elem()))
	}
	m, ok := field.Interface().(proto.Message)
	return m, ok
}

var messageType = reflect.TypeFor[proto.Message]()

func invalidJSON(data []byte) *requestError {
	var raw json.RawMessage
	desc := "the request body is not valid JSON"
	if err := json.Unmarshal(data, &raw); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			desc = fmt.Sprintf("%s: %s (at byte %d)", desc, se.Error(), se.Offset)
		} else {
			desc = desc + ": " + err.Error()
		}
	}
	return &requestError{reason: errorsv1.ErrorReason_ERROR_REASON_MALFORMED_REQUEST, field: "body", description: desc}
}

// protojsonPosition finds the position protojson reports. Its messages are not a
// stable API (it even varies the space after "proto:" on purpose), so only the
// "(line L:C): detail" part is relied on, and the tests pin the details used.
var protojsonPosition = regexp.MustCompile(`\(line (\d+):(\d+)\): (.*)$`)

// describeDecodeError turns a protojson error on syntactically valid JSON into
// the field path and a description a client can act on.
func describeDecodeError(data []byte, md protoreflect.MessageDescriptor, err error) *requestError {
	text := err.Error()
	m := protojsonPosition.FindStringSubmatch(text)
	if m == nil {
		return &requestError{
			reason:      errorsv1.ErrorReason_ERROR_REASON_MALFORMED_REQUEST,
			field:       "body",
			description: cleanProtoError(text),
		}
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	detail := m[3]
	off := byteOffset(data, line, col)

	field, expect := "body", "a JSON object"
	if segs, ok := jsonPathAt(data, off); ok && len(segs) > 0 {
		var fd protoreflect.FieldDescriptor
		var element bool
		field, fd, element = resolvePath(md, segs)
		expect = expectation(fd, element)
	}
	got := describeValueAt(data, off)

	switch {
	case strings.HasPrefix(detail, "unknown field"):
		return &requestError{
			reason:      errorsv1.ErrorReason_ERROR_REASON_UNKNOWN_FIELD,
			field:       field,
			description: "unknown field",
		}
	case strings.HasPrefix(detail, "duplicate field"), strings.HasPrefix(detail, "duplicate map key"):
		return &requestError{
			reason:      errorsv1.ErrorReason_ERROR_REASON_MALFORMED_REQUEST,
			field:       field,
			description: "given more than once",
		}
	case strings.HasPrefix(detail, "invalid value for enum"):
		return &requestError{
			reason:      errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
			field:       field,
			description: fmt.Sprintf("expected %s, got %s", expect, got),
		}
	case expect != "" && (strings.HasPrefix(detail, "invalid ") || strings.HasPrefix(detail, "unexpected token")):
		return &requestError{
			reason:      errorsv1.ErrorReason_ERROR_REASON_MALFORMED_REQUEST,
			field:       field,
			description: fmt.Sprintf("expected %s, got %s", expect, got),
		}
	}
	return &requestError{reason: errorsv1.ErrorReason_ERROR_REASON_MALFORMED_REQUEST, field: field, description: detail}
}

// cleanProtoError drops the "proto:" prefix of protobuf-go errors.
func cleanProtoError(s string) string {
	if rest, ok := strings.CutPrefix(s, "proto:"); ok {
		return strings.TrimLeft(rest, " \u00a0")
	}
	return s
}

// byteOffset inverts protojson's position: a 1-based line and a 1-based column
// counted in runes.
func byteOffset(data []byte, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return -1
		}
		off += i + 1
	}
	for c := 1; c < col; c++ {
		if off >= len(data) {
			return -1
		}
		_, size := utf8.DecodeRune(data[off:])
		off += size
	}
	return off
}

// describeValueAt names the JSON value starting at off for an error message,
// quoting short scalars and summarising containers.
func describeValueAt(data []byte, off int) string {
	if off < 0 || off >= len(data) {
		return "something else"
	}
	switch data[off] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	end := off
	if data[off] == '"' {
		end++
		for end < len(data) && data[end] != '"' {
			if data[end] == '\\' {
				end++
			}
			end++
		}
		end++
	} else {
		for end < len(data) && !strings.ContainsRune(",}] \t\r\n", rune(data[end])) {
			end++
		}
	}
	end = min(end, len(data))
	const maxShown = 64
	if end-off > maxShown {
		return string(data[off:off+maxShown]) + "…"
	}
	return string(data[off:end])
}

// pathSeg is one step of a JSON path: an object key or an array index.
type pathSeg struct {
	key     string
	index   int
	isIndex bool
}

// maxPathDepth bounds the path scanner's recursion on hostile input; protojson
// itself stops at 10000 levels.
const maxPathDepth = 10000

// jsonPathAt returns the path of the object key or the value that starts at
// byte off of data. It reads only as far as off, so data need only be valid JSON
// up to there.
func jsonPathAt(data []byte, off int) ([]pathSeg, bool) {
	if off < 0 || off >= len(data) {
		return nil, false
	}
	s := pathScanner{data: data, target: off}
	s.value(nil, 0)
	return s.found, s.ok
}

type pathScanner struct {
	data   []byte
	pos    int
	target int
	found  []pathSeg
	ok     bool
	failed bool
}

func (s *pathScanner) stopped() bool { return s.ok || s.failed }

func (s *pathScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// at reports whether the scanner reached the target (recording path) or passed
// it, which means the target was not the start of a key or value.
func (s *pathScanner) at(path []pathSeg) bool {
	switch {
	case s.pos == s.target:
		s.found, s.ok = slices.Clone(path), true
		return true
	case s.pos > s.target, s.pos >= len(s.data):
		s.failed = true
		return true
	}
	return false
}

func (s *pathScanner) value(path []pathSeg, depth int) {
	s.skipSpace()
	if s.at(path) {
		return
	}
	if depth > maxPathDepth {
		s.failed = true
		return
	}
	switch s.data[s.pos] {
	case '{':
		s.object(path, depth)
	case '[':
		s.array(path, depth)
	case '"':
		if _, ok := s.str(); !ok {
			s.failed = true
		}
	default:
		start := s.pos
		for s.pos < len(s.data) && !strings.ContainsRune(",}] \t\r\n", rune(s.data[s.pos])) {
			s.pos++
		}
		if s.pos == start {
			// A delimiter where a value belongs: not JSON this scanner can follow.
			s.failed = true
		}
	}
}

func (s *pathScanner) object(path []pathSeg, depth int) {
	s.pos++ // '{'
	for !s.stopped() {
		s.skipSpace()
		if s.pos >= len(s.data) || s.pos > s.target {
			s.failed = true
			return
		}
		switch s.data[s.pos] {
		case '}':
			s.pos++
			return
		case ',':
			s.pos++
			continue
		}
		keyStart := s.pos
		key, ok := s.str()
		if !ok {
			s.failed = true
			return
		}
		child := append(slices.Clip(path), pathSeg{key: key})
		if keyStart == s.target {
			s.found, s.ok = child, true
			return
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			s.failed = true
			return
		}
		s.pos++
		s.value(child, depth+1)
	}
}

func (s *pathScanner) array(path []pathSeg, depth int) {
	s.pos++ // '['
	for i := 0; !s.stopped(); {
		s.skipSpace()
		if s.pos >= len(s.data) || s.pos > s.target {
			s.failed = true
			return
		}
		switch s.data[s.pos] {
		case ']':
			s.pos++
			return
		case ',':
			s.pos++
			i++
			continue
		}
		s.value(append(slices.Clip(path), pathSeg{index: i, isIndex: true}), depth+1)
	}
}

// str reads a JSON string starting at the opening quote and returns its value.
func (s *pathScanner) str() (string, bool) {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return "", false
	}
	start := s.pos
	s.pos++
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '\\':
			s.pos += 2
			continue
		case '"':
			s.pos++
			var v string
			if err := json.Unmarshal(s.data[start:s.pos], &v); err != nil {
				return "", false
			}
			return v, true
		}
		s.pos++
	}
	return "", false
}

// resolvePath renders a JSON path with proto field names (clients may send JSON
// names, which protojson accepts) in the style protovalidate uses for violations:
// "identities[2].claims", "labels[\"env\"]". It also returns the field the path
// ends at and whether it ends at an element of that (repeated or map) field.
// Keys it cannot resolve, such as those inside a google.protobuf.Struct, are kept
// as written.
func resolvePath(md protoreflect.MessageDescriptor, segs []pathSeg) (string, protoreflect.FieldDescriptor, bool) {
	var b strings.Builder
	cur := md // the message the next key belongs to; nil when none does
	var fd protoreflect.FieldDescriptor
	element, opaque := false, false
	writeKey := func(k string) {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k)
	}
	enter := func(m protoreflect.MessageDescriptor) protoreflect.MessageDescriptor {
		if m == nil || opaqueMessage(m) {
			return nil
		}
		return m
	}
	for _, s := range segs {
		switch {
		case s.isIndex:
			fmt.Fprintf(&b, "[%d]", s.index)
			if !opaque && fd != nil && fd.IsList() && !element {
				element, cur = true, enter(fd.Message())
				continue
			}
			opaque, fd = true, nil
		case opaque:
			writeKey(s.key)
		case fd != nil && fd.IsMap() && !element:
			b.WriteString("[" + strconv.Quote(s.key) + "]")
			element, cur = true, enter(fd.MapValue().Message())
		case cur != nil:
			f := cur.Fields().ByTextName(s.key)
			if f == nil {
				f = cur.Fields().ByJSONName(s.key)
			}
			if f == nil {
				writeKey(s.key)
				opaque, fd = true, nil
				continue
			}
			writeKey(string(f.Name()))
			fd, element, cur = f, false, nil
			if !f.IsList() && !f.IsMap() {
				cur = enter(f.Message())
			}
		default:
			writeKey(s.key)
			opaque, fd = true, nil
		}
	}
	if opaque {
		return b.String(), nil, false
	}
	return b.String(), fd, element
}

// opaqueMessage reports well-known types whose JSON form has no proto fields to
// look up: their keys are the client's own.
func opaqueMessage(m protoreflect.MessageDescriptor) bool {
	switch m.FullName() {
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any":
		return true
	}
	return false
}

// expectation says in words what JSON a field takes, for "expected X, got Y".
// element means an element of a repeated field or a value of a map field.
func expectation(fd protoreflect.FieldDescriptor, element bool) string {
	if fd == nil {
		return ""
	}
	if !element {
		switch {
		case fd.IsList():
			return "an array"
		case fd.IsMap():
			return "an object"
		}
	} else if fd.IsMap() {
		fd = fd.MapValue()
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return "an integer"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "a non-negative integer"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "a number"
	case protoreflect.StringKind:
		return "a string"
	case protoreflect.BytesKind:
		return "a base64 string"
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return "null"
		}
		values := fd.Enum().Values()
		names := make([]string, 0, values.Len())
		for i := range values.Len() {
			names = append(names, string(values.Get(i).Name()))
		}
		return "one of " + strings.Join(names, ", ")
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return messageExpectation(fd.Message())
	}
	return ""
}

func messageExpectation(m protoreflect.MessageDescriptor) string {
	switch m.FullName() {
	case "google.protobuf.Timestamp":
		return `an RFC 3339 timestamp such as "2025-01-31T12:00:00Z"`
	case "google.protobuf.Duration":
		return `a duration in seconds such as "3.5s"`
	case "google.protobuf.FieldMask":
		return `a comma-separated list of field names such as "role,claims"`
	case "google.protobuf.Value":
		return "a JSON value"
	case "google.protobuf.ListValue":
		return "an array"
	case "google.protobuf.StringValue", "google.protobuf.BytesValue",
		"google.protobuf.BoolValue", "google.protobuf.Int32Value", "google.protobuf.Int64Value",
		"google.protobuf.UInt32Value", "google.protobuf.UInt64Value",
		"google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		return expectation(m.Fields().ByName("value"), false)
	}
	return "an object"
}
