package apitest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// RESTError is a REST answer with status 400 or above.
type RESTError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Status is the body decoded as a google.rpc.Status.
	Status *statuspb.Status
	// Header is the response's header (Retry-After, WWW-Authenticate, ...).
	Header http.Header
	// Body is the raw body.
	Body []byte
}

// Error implements error.
func (e *RESTError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.StatusCode, e.Body)
}

// GRPCStatus returns the status carried by the body, so that status.Convert and
// status.Code work on a *RESTError as they do on a gRPC error.
func (e *RESTError) GRPCStatus() *status.Status {
	if e == nil || e.Status == nil {
		return status.New(codes.Unknown, "apitest: no error body")
	}
	return status.FromProto(e.Status)
}

var (
	bodyMarshal   = protojson.MarshalOptions{UseProtoNames: true}
	bodyUnmarshal = protojson.UnmarshalOptions{DiscardUnknown: false}
	errorDecode   = protojson.UnmarshalOptions{DiscardUnknown: false, Resolver: protoregistry.GlobalTypes}
)

// CallREST sends the case's request through the REST edge. It returns the
// decoded response (status below 400), or the decoded error (400 and above), and
// the HTTP status. err reports a case the harness cannot translate, a transport
// failure, or a body that does not decode: all of them fail a test.
func CallREST(ctx context.Context, target Target, c Case) (proto.Message, *RESTError, int, error) {
	m, err := lookupMethod(c.Method)
	if err != nil {
		return nil, nil, 0, err
	}
	req, err := c.request(m, REST)
	if err != nil {
		return nil, nil, 0, err
	}
	rule, err := httpRule(m.desc)
	if err != nil {
		return nil, nil, 0, err
	}
	hreq, err := newHTTPRequest(ctx, target.RESTBase, rule, req)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("apitest: case %q: %w", c.Name, err)
	}
	hreq.Header.Set("Accept", "application/json")
	if c.Credential != "" {
		hreq.Header.Set(APIKeyHeader, c.Credential)
	}
	for k, v := range c.Headers {
		hreq.Header.Set(k, v)
	}
	code, header, body, err := do(target.httpClient(), hreq)
	if err != nil {
		return nil, nil, 0, err
	}
	if code >= http.StatusBadRequest {
		restErr, err := decodeError(code, header, body)
		return nil, restErr, code, err
	}
	out := m.out.New().Interface()
	if err := decodeResponse(rule, out, body); err != nil {
		return nil, nil, code, fmt.Errorf("apitest: %s %s answered %d with a body that is not a %s: %w\nbody: %s",
			hreq.Method, hreq.URL, code, m.desc.Output().FullName(), err, body)
	}
	return out, nil, code, nil
}

// do sends req and reads the whole answer.
func do(client *http.Client, req *http.Request) (int, http.Header, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("apitest: %s %s: %w", req.Method, req.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("apitest: read the answer to %s %s: %w", req.Method, req.URL, err)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// decodeError reads an error body as a google.rpc.Status.
func decodeError(code int, header http.Header, body []byte) (*RESTError, error) {
	st := &statuspb.Status{}
	if err := errorDecode.Unmarshal(body, st); err != nil {
		return nil, fmt.Errorf("apitest: HTTP %d with a body that is not a google.rpc.Status: %w\nbody: %s", code, err, body)
	}
	return &RESTError{StatusCode: code, Status: st, Header: header, Body: body}, nil
}

// decodeResponse decodes a successful body into out, or into out's field named by
// the rule's response_body.
func decodeResponse(rule *annotations.HttpRule, out proto.Message, body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	into := out
	if name := rule.GetResponseBody(); name != "" {
		fd := out.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.Message() == nil || fd.IsList() || fd.IsMap() {
			return fmt.Errorf("response_body %q is not a singular message field; the harness cannot decode it", name)
		}
		into = out.ProtoReflect().Mutable(fd).Message().Interface()
	}
	return bodyUnmarshal.Unmarshal(body, into)
}

// httpRule returns the method's google.api.http rule.
func httpRule(md protoreflect.MethodDescriptor) (*annotations.HttpRule, error) {
	rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
	if rule == nil || rule.GetPattern() == nil {
		return nil, fmt.Errorf("apitest: %s has no google.api.http rule, so it has no REST form", md.FullName())
	}
	return rule, nil
}

// verbAndTemplate returns the HTTP method and path template of the rule's primary
// binding; additional_bindings are not used.
func verbAndTemplate(rule *annotations.HttpRule) (string, string) {
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return http.MethodGet, p.Get
	case *annotations.HttpRule_Put:
		return http.MethodPut, p.Put
	case *annotations.HttpRule_Post:
		return http.MethodPost, p.Post
	case *annotations.HttpRule_Delete:
		return http.MethodDelete, p.Delete
	case *annotations.HttpRule_Patch:
		return http.MethodPatch, p.Patch
	case *annotations.HttpRule_Custom:
		return p.Custom.GetKind(), p.Custom.GetPath()
	}
	return "", ""
}

// newHTTPRequest translates req into the HTTP request the rule describes.
func newHTTPRequest(ctx context.Context, base string, rule *annotations.HttpRule, req proto.Message) (*http.Request, error) {
	verb, tmpl := verbAndTemplate(rule)
	msg := req.ProtoReflect()
	path, bound, err := expandTemplate(tmpl, func(field string) (string, error) { return pathValue(msg, field) })
	if err != nil {
		return nil, err
	}
	isBound := map[string]bool{}
	for _, f := range bound {
		isBound[f] = true
	}

	var body []byte
	query := url.Values{}
	switch field := rule.GetBody(); field {
	case "*":
		clone := proto.Clone(req)
		for _, f := range bound {
			clearField(clone.ProtoReflect(), f)
		}
		if body, err = bodyMarshal.Marshal(clone); err != nil {
			return nil, fmt.Errorf("encode the body: %w", err)
		}
	case "":
		if err := queryValues(msg, "", isBound, query); err != nil {
			return nil, err
		}
	default:
		if body, err = fieldBody(req, field, bound); err != nil {
			return nil, err
		}
		isBound[field] = true
		if err := queryValues(msg, "", isBound, query); err != nil {
			return nil, err
		}
	}

	u := strings.TrimSuffix(base, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hreq, err := http.NewRequestWithContext(ctx, verb, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build %s %s: %w", verb, u, err)
	}
	if body != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	return hreq, nil
}

// fieldBody encodes the request's field named by the rule's body, without the
// values that travel in the path.
func fieldBody(req proto.Message, field string, bound []string) ([]byte, error) {
	fd := req.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(field))
	if fd == nil {
		return nil, fmt.Errorf("the http rule's body %q is not a field of %s", field, req.ProtoReflect().Descriptor().FullName())
	}
	clone := proto.Clone(req).ProtoReflect()
	for _, f := range bound {
		clearField(clone, f)
	}
	if fd.Message() != nil && !fd.IsList() && !fd.IsMap() {
		b, err := bodyMarshal.Marshal(clone.Get(fd).Message().Interface())
		if err != nil {
			return nil, fmt.Errorf("encode the body %s: %w", field, err)
		}
		return b, nil
	}
	// Lists, maps and scalars have no JSON of their own in protojson: encode a
	// message holding only that field and take its value.
	only := clone.New()
	if clone.Has(fd) {
		only.Set(fd, clone.Get(fd))
	}
	opts := bodyMarshal
	opts.EmitUnpopulated = !only.Has(fd)
	b, err := opts.Marshal(only.Interface())
	if err != nil {
		return nil, fmt.Errorf("encode the body %s: %w", field, err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("encode the body %s: %w", field, err)
	}
	return obj[string(fd.Name())], nil
}

// clearField clears the field at a dotted path, if it is set.
func clearField(msg protoreflect.Message, path string) {
	parts := strings.Split(path, ".")
	for i, part := range parts {
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(part))
		if fd == nil || !msg.Has(fd) {
			return
		}
		if i == len(parts)-1 {
			msg.Clear(fd)
			return
		}
		if fd.Message() == nil || fd.IsList() || fd.IsMap() {
			return
		}
		msg = msg.Mutable(fd).Message()
	}
}

// expandTemplate substitutes the variables of a google.api.http path template
// ({field}, {field.sub}, {field=pattern/*}, {field=pattern/**}) with the values
// value returns, and lists the fields it used. A variable without a pattern is one
// path segment, so a '/' in its value is escaped; a variable with a pattern keeps
// the value's slashes, and the value must match the pattern.
func expandTemplate(tmpl string, value func(field string) (string, error)) (string, []string, error) {
	var b strings.Builder
	var fields []string
	rest := tmpl
	for {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			b.WriteString(rest)
			break
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return "", nil, fmt.Errorf("path template %q has an unclosed '{'", tmpl)
		}
		b.WriteString(rest[:open])
		variable := rest[open+1 : open+end]
		rest = rest[open+end+1:]

		field, pattern, hasPattern := strings.Cut(variable, "=")
		if field == "" {
			return "", nil, fmt.Errorf("path template %q has a variable without a field", tmpl)
		}
		v, err := value(field)
		if err != nil {
			return "", nil, err
		}
		if v == "" {
			return "", nil, fmt.Errorf("path parameter %s is empty, and an empty segment cannot be sent in %q (send that request with a RawCase)", field, tmpl)
		}
		if !hasPattern || pattern == "*" {
			b.WriteString(url.PathEscape(v))
		} else {
			if !matchSegments(strings.Split(pattern, "/"), strings.Split(v, "/")) {
				return "", nil, fmt.Errorf("path parameter %s = %q does not match the pattern %q of %q", field, v, pattern, tmpl)
			}
			segs := strings.Split(v, "/")
			for i, s := range segs {
				segs[i] = url.PathEscape(s)
			}
			b.WriteString(strings.Join(segs, "/"))
		}
		fields = append(fields, field)
	}
	return b.String(), fields, nil
}

// matchSegments reports whether value's segments fit a template pattern: literals
// match themselves, '*' one non-empty segment, '**' (last only) one or more.
func matchSegments(pattern, value []string) bool {
	for i, p := range pattern {
		if p == "**" {
			return i == len(pattern)-1 && len(value) > i
		}
		if i >= len(value) {
			return false
		}
		if (p == "*" && value[i] == "") || (p != "*" && p != value[i]) {
			return false
		}
	}
	return len(value) == len(pattern)
}

// pathValue is the text of the field at a dotted path; "" when it or a message
// on the way is unset.
func pathValue(msg protoreflect.Message, path string) (string, error) {
	parts := strings.Split(path, ".")
	for i, part := range parts {
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(part))
		if fd == nil {
			return "", fmt.Errorf("path parameter %s: %s has no field %s", path, msg.Descriptor().FullName(), part)
		}
		if fd.IsList() || fd.IsMap() {
			return "", fmt.Errorf("path parameter %s: field %s is repeated", path, part)
		}
		if i == len(parts)-1 {
			if fd.Message() != nil && !msg.Has(fd) {
				return "", nil
			}
			return formatValue(fd, msg.Get(fd))
		}
		if fd.Message() == nil {
			return "", fmt.Errorf("path parameter %s: field %s is not a message", path, part)
		}
		if !msg.Has(fd) {
			return "", nil
		}
		msg = msg.Get(fd).Message()
	}
	return "", nil
}

// queryValues adds the populated fields of msg, except the skipped ones, as
// grpc-gateway's query parser reads them: proto field names, nested messages as
// dotted names, repeated fields as repeated parameters, maps as name[key].
func queryValues(msg protoreflect.Message, prefix string, skip map[string]bool, q url.Values) error {
	var err error
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := prefix + string(fd.Name())
		if skip[name] {
			return true
		}
		switch {
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				var s string
				if s, err = formatValue(fd.MapValue(), mv); err != nil {
					err = fmt.Errorf("query parameter %s[%s]: %w", name, k.String(), err)
					return false
				}
				q.Add(name+"["+k.String()+"]", s)
				return true
			})
		case fd.IsList():
			list := v.List()
			for i := range list.Len() {
				var s string
				if s, err = formatValue(fd, list.Get(i)); err != nil {
					err = fmt.Errorf("query parameter %s: %w", name, err)
					return false
				}
				q.Add(name, s)
			}
		case fd.Message() != nil && !isQueryLeaf(fd.Message().FullName()):
			err = queryValues(v.Message(), name+".", skip, q)
		default:
			var s string
			if s, err = formatValue(fd, v); err != nil {
				err = fmt.Errorf("query parameter %s: %w", name, err)
				return false
			}
			q.Add(name, s)
		}
		return err == nil
	})
	return err
}

// queryLeaves are the message types that are one query value, and those that
// cannot be a query parameter at all.
var queryLeaves = map[protoreflect.FullName]bool{
	"google.protobuf.Timestamp":   true,
	"google.protobuf.Duration":    true,
	"google.protobuf.FieldMask":   true,
	"google.protobuf.Empty":       true,
	"google.protobuf.DoubleValue": true,
	"google.protobuf.FloatValue":  true,
	"google.protobuf.Int64Value":  true,
	"google.protobuf.UInt64Value": true,
	"google.protobuf.Int32Value":  true,
	"google.protobuf.UInt32Value": true,
	"google.protobuf.BoolValue":   true,
	"google.protobuf.StringValue": true,
	"google.protobuf.BytesValue":  true,
	// Not representable; formatValue says so.
	"google.protobuf.Struct":    true,
	"google.protobuf.Value":     true,
	"google.protobuf.ListValue": true,
	"google.protobuf.Any":       true,
}

func isQueryLeaf(name protoreflect.FullName) bool { return queryLeaves[name] }

// errNotScalar marks a message that has no single-value form.
var errNotScalar = errors.New("not representable as a single value")

// formatValue is the text form of one value of fd, as grpc-gateway parses path
// and query values: enums by name, bytes in base64, Timestamps in RFC 3339,
// Durations as Go durations, FieldMasks as comma-separated proto paths, wrappers
// as their value.
func formatValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) (string, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.FormatBool(v.Bool()), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name()), nil
		}
		return strconv.Itoa(int(v.Enum())), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.FormatInt(v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.FormatUint(v.Uint(), 10), nil
	case protoreflect.FloatKind:
		return strconv.FormatFloat(v.Float(), 'g', -1, 32), nil
	case protoreflect.DoubleKind:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64), nil
	case protoreflect.StringKind:
		return v.String(), nil
	case protoreflect.BytesKind:
		return base64.URLEncoding.EncodeToString(v.Bytes()), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		s, err := formatMessage(v.Message())
		if errors.Is(err, errNotScalar) {
			return "", fmt.Errorf("field %s is a %s, which cannot be sent in a URL (%w); test it with a method whose body carries it, or with a RawCase",
				fd.Name(), fd.Message().FullName(), err)
		}
		return s, err
	}
	return "", fmt.Errorf("field %s has kind %s, which the harness cannot format", fd.Name(), fd.Kind())
}

// formatMessage formats the well-known types that travel as one URL value.
func formatMessage(m protoreflect.Message) (string, error) {
	fields := m.Descriptor().Fields()
	switch name := m.Descriptor().FullName(); name {
	case "google.protobuf.Timestamp", "google.protobuf.Duration":
		// protojson writes RFC 3339 ("2024-05-01T10:00:00Z") and "1.5s", which
		// grpc-gateway parses with time.Parse(RFC3339Nano) and time.ParseDuration.
		b, err := protojson.Marshal(m.Interface())
		if err != nil {
			return "", fmt.Errorf("format %s: %w", name, err)
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", fmt.Errorf("format %s: %w", name, err)
		}
		return s, nil
	case "google.protobuf.FieldMask":
		// Proto names, not protojson's lowerCamelCase.
		list := m.Get(fields.ByName("paths")).List()
		paths := make([]string, list.Len())
		for i := range paths {
			paths[i] = list.Get(i).String()
		}
		return strings.Join(paths, ","), nil
	case "google.protobuf.Empty":
		return "", nil
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		fd := fields.ByName("value")
		return formatValue(fd, m.Get(fd))
	}
	return "", errNotScalar
}
