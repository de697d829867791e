package apitest

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// method is what the harness needs to know about one RPC.
type method struct {
	desc protoreflect.MethodDescriptor
	in   protoreflect.MessageType
	out  protoreflect.MessageType
}

// methods caches lookups by full method name; descriptors never change while a
// test binary runs.
var methods sync.Map // string -> *method

// lookupMethod finds a unary method such as "/pkg.Service/Method" in the global
// registries.
func lookupMethod(fullMethod string) (*method, error) {
	if m, ok := methods.Load(fullMethod); ok {
		return m.(*method), nil
	}
	svcName, methodName, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !strings.HasPrefix(fullMethod, "/") || !ok || svcName == "" || methodName == "" || strings.Contains(methodName, "/") {
		return nil, fmt.Errorf("apitest: method %q is not of the form /package.Service/Method", fullMethod)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svcName))
	if err != nil {
		return nil, fmt.Errorf("apitest: service %s is not registered (is its generated package imported?): %w", svcName, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("apitest: %s is a %T, not a service", svcName, d)
	}
	md := sd.Methods().ByName(protoreflect.Name(methodName))
	if md == nil {
		return nil, fmt.Errorf("apitest: service %s has no method %s", svcName, methodName)
	}
	if md.IsStreamingClient() || md.IsStreamingServer() {
		return nil, fmt.Errorf("apitest: %s is a streaming method; only unary methods are supported", fullMethod)
	}
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return nil, fmt.Errorf("apitest: input type of %s: %w", fullMethod, err)
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("apitest: output type of %s: %w", fullMethod, err)
	}
	m, _ := methods.LoadOrStore(fullMethod, &method{desc: md, in: in, out: out})
	return m.(*method), nil
}

// request returns the message the case sends over tr: NewRequest's, else
// Request, else an empty input message.
func (c Case) request(m *method, tr Transport) (proto.Message, error) {
	req := c.Request
	if c.NewRequest != nil {
		req = c.NewRequest(tr)
	}
	if req == nil {
		return m.in.New().Interface(), nil
	}
	if got, want := req.ProtoReflect().Descriptor().FullName(), m.desc.Input().FullName(); got != want {
		return nil, fmt.Errorf("apitest: case %q: request is a %s, but %s takes a %s", c.Name, got, c.Method, want)
	}
	return req, nil
}

// CallGRPC sends the case's request over gRPC and returns the response, or the
// error: a gRPC status error for the server's answers (status.Convert reads it),
// or a plain error when the case itself is wrong (unknown method, wrong request
// type).
func CallGRPC(ctx context.Context, conn grpc.ClientConnInterface, c Case) (proto.Message, error) {
	resp, rpcErr, err := callGRPC(ctx, conn, c)
	if err != nil {
		return nil, err
	}
	if rpcErr != nil {
		return nil, rpcErr
	}
	return resp, nil
}

// callGRPC keeps the server's error (rpcErr) apart from the harness's (err).
func callGRPC(ctx context.Context, conn grpc.ClientConnInterface, c Case) (resp proto.Message, rpcErr, err error) {
	m, err := lookupMethod(c.Method)
	if err != nil {
		return nil, nil, err
	}
	req, err := c.request(m, GRPC)
	if err != nil {
		return nil, nil, err
	}
	// Headers win over Credential, as they do over REST.
	md := metadata.MD{}
	if c.Credential != "" {
		md.Set(APIKeyHeader, c.Credential)
	}
	for k, v := range c.Headers {
		md.Set(k, v) // Set lower-cases the key
	}
	if len(md) > 0 {
		outgoing, _ := metadata.FromOutgoingContext(ctx)
		ctx = metadata.NewOutgoingContext(ctx, metadata.Join(outgoing, md))
	}
	out := m.out.New().Interface()
	if rpcErr := conn.Invoke(ctx, c.Method, req, out); rpcErr != nil {
		return nil, rpcErr, nil
	}
	return out, nil, nil
}
