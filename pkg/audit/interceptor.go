package audit

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
)

// readOnlyPrefixes are method-name prefixes that change nothing and are not
// audited. Embed (a computation) and IntrospectCredential (asked by other
// processes on every request they authenticate) read nothing of a tenant's and
// change nothing either; auditing them would bury the log's changes.
var readOnlyPrefixes = []string{"Get", "List", "Search", "Verify", "Export", "Check", "Validate", "Test", "Embed", "Introspect"}

// changesDespiteName are methods whose name reads like a query but that change
// state: VerifyMfa activates a pending MFA enrolment.
var changesDespiteName = map[string]bool{"VerifyMfa": true}

// Mutating reports whether a full gRPC method changes state, judged by its name
// (AIP-style names: Get*, List*, ... read).
func Mutating(fullMethod string) bool {
	if strings.HasPrefix(fullMethod, "/grpc.") {
		return false
	}
	name := fullMethod[strings.LastIndexByte(fullMethod, '/')+1:]
	if changesDespiteName[name] {
		return true
	}
	for _, p := range readOnlyPrefixes {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

// UnaryServerInterceptor records every mutating request of an authenticated
// caller: actor, action (the full method), resource type (the service area) and
// id (the request's "id" field), the request as Before and the response as After
// (both redacted), request id, client address, user agent and result, refusals
// included. It must run after authentication and around authorization (the
// server's observer slot). Public calls carry no principal and are left to their
// handlers (sign-in records its own). The sink is handed the record after the
// handler returns; a nil sink records nothing.
func UnaryServerInterceptor(sink Sink) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if sink == nil || !Mutating(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, extra := withRedactions(ctx)
		resp, err := handler(ctx, req)
		p, ok := auth.FromContext(ctx)
		if !ok || p.TenantID == "" {
			return resp, err
		}
		rec := FromRequest(ctx, p.TenantID, info.FullMethod)
		rec.ResourceType = ResourceType(info.FullMethod)
		if msg, ok := req.(proto.Message); ok {
			rec.ResourceID = idField(msg)
			rec.Before = marshalRedacted(msg, extra.snapshot())
		}
		if msg, ok := resp.(proto.Message); ok && err == nil {
			rec.After = marshalRedacted(msg, extra.snapshot())
		}
		if err != nil {
			rec.Result = ResultOf(err)
			rec.ErrorReason = int32(apierr.ReasonOf(err))
		}
		Emit(ctx, sink, rec)
		return resp, err
	}
}

// ResultOf maps a call's error to a result: refusals of authentication or
// authorization are denials, anything else an error.
func ResultOf(err error) Result {
	if err == nil {
		return ResultSuccess
	}
	if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated {
		return ResultDenied
	}
	return ResultError
}

// ResourceType is the service area of a method: "/manushya.memory.v1.X/Y" → "memory".
func ResourceType(fullMethod string) string {
	parts := strings.Split(strings.TrimPrefix(fullMethod, "/"), ".")
	if len(parts) > 1 {
		return parts[1]
	}
	return fullMethod
}

// idField returns the request's "id" string field, if any.
func idField(msg proto.Message) string {
	f := msg.ProtoReflect().Descriptor().Fields().ByName("id")
	if f != nil && f.Kind() == protoreflect.StringKind && f.Cardinality() != protoreflect.Repeated {
		return msg.ProtoReflect().Get(f).String()
	}
	return ""
}

func marshalRedacted(msg proto.Message, extra map[string]bool) []byte {
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
	if err != nil {
		return nil
	}
	return redactWith(raw, extra)
}
