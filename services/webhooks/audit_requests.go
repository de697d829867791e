package webhooks

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

// auditQueueSize bounds the records waiting for the request audit writer.
const auditQueueSize = 4096

// readOnlyPrefixes are method-name prefixes that change nothing and are not audited.
var readOnlyPrefixes = []string{"Get", "List", "Search", "Verify", "Export", "Check", "Validate", "Test"}

func mutating(fullMethod string) bool {
	i := strings.LastIndexByte(fullMethod, '/')
	name := fullMethod[i+1:]
	for _, p := range readOnlyPrefixes {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return !strings.HasPrefix(fullMethod, "/grpc.")
}

// AuditInterceptor records every mutating request (any method not named Get*,
// List*, Search*, ...) of an authenticated caller: actor, action (the full
// method), resource, the request as "before" and the response as "after" (both
// with secret-looking fields redacted), request id, client address, user agent and
// result. It must run after authentication. Records are written asynchronously,
// batched per tenant, so the request does not wait for the audit log; the
// lead wires it into the gRPC server (see the report).
func (m *Module) AuditInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if !mutating(info.FullMethod) {
			return resp, err
		}
		p, ok := auth.FromContext(ctx)
		if !ok {
			return resp, err
		}
		tenant, perr := uuid.Parse(p.TenantID)
		if perr != nil {
			return resp, err
		}
		rec := AuditRecord{
			TenantID: tenant, ActorIdentityID: p.IdentityID, ActorKind: actorKind(p), ActorAPIKeyID: p.APIKeyID,
			ActorSessionID: p.SessionID, ActorExternalID: p.ExternalID, Action: info.FullMethod,
			ResourceType: resourceType(info.FullMethod), RequestID: telemetry.RequestID(ctx),
			Result: eventsv1.AuditResult_AUDIT_RESULT_SUCCESS, Time: m.svc.now(),
		}
		if msg, ok := req.(proto.Message); ok {
			rec.ResourceID = idField(msg)
			rec.Before = marshalRedacted(msg)
		}
		if msg, ok := resp.(proto.Message); ok && err == nil {
			rec.After = marshalRedacted(msg)
		}
		if err != nil {
			rec.Result = eventsv1.AuditResult_AUDIT_RESULT_ERROR
			if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated {
				rec.Result = eventsv1.AuditResult_AUDIT_RESULT_DENIED
			}
			rec.ErrorReason = int32(apierr.ReasonOf(err))
		}
		if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
			rec.ClientIP = pr.Addr.String()
		}
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if ua := md.Get("user-agent"); len(ua) > 0 {
				rec.UserAgent = ua[0]
			}
			if fwd := md.Get("x-forwarded-for"); len(fwd) > 0 {
				rec.ClientIP = strings.TrimSpace(strings.Split(fwd[0], ",")[0])
			}
		}
		select {
		case m.auditQ <- rec:
		default:
			m.svc.logger.WarnContext(ctx, "audit queue full, writing inline", "action", rec.Action)
			if aerr := m.svc.AppendAudit(context.WithoutCancel(ctx), tenant, rec); aerr != nil {
				m.svc.logger.ErrorContext(ctx, "audit write failed", "action", rec.Action, "err", aerr)
			}
		}
		return resp, err
	}
}

func actorKind(p *auth.Principal) eventsv1.AuditActorKind {
	switch {
	case p.IsOperator():
		return eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_OPERATOR
	case p.Kind == auth.KindAgent:
		return eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_AGENT
	case p.Kind == auth.KindService:
		return eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_SERVICE
	}
	return eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_USER
}

// resourceType is the service area of a method: "/manushya.memory.v1.X/Y" → "memory".
func resourceType(fullMethod string) string {
	parts := strings.Split(strings.TrimPrefix(fullMethod, "/"), ".")
	if len(parts) > 1 {
		return parts[1]
	}
	return fullMethod
}

// idField returns the request's "id" (or "<x>_id") string field, if any.
func idField(msg proto.Message) string {
	fields := msg.ProtoReflect().Descriptor().Fields()
	if f := fields.ByName("id"); f != nil && f.Kind() == protoreflect.StringKind {
		return msg.ProtoReflect().Get(f).String()
	}
	return ""
}

func marshalRedacted(msg proto.Message) []byte {
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
	if err != nil {
		return nil
	}
	return redact(raw)
}

// auditRequestWriter drains the interceptor's queue, one transaction per tenant
// per batch.
func (m *Module) auditRequestWriter(ctx context.Context) error {
	for {
		var batch []AuditRecord
		select {
		case <-ctx.Done():
			// Drain what is already queued before stopping.
			for {
				select {
				case r := <-m.auditQ:
					batch = append(batch, r)
				default:
					m.writeAuditBatch(context.WithoutCancel(ctx), batch)
					return nil
				}
			}
		case r := <-m.auditQ:
			batch = append(batch, r)
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-m.auditQ:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		m.writeAuditBatch(ctx, batch)
	}
}

func (m *Module) writeAuditBatch(ctx context.Context, batch []AuditRecord) {
	byTenant := map[uuid.UUID][]AuditRecord{}
	for _, r := range batch {
		byTenant[r.TenantID] = append(byTenant[r.TenantID], r)
	}
	for tenant, recs := range byTenant {
		for attempt := range 3 {
			err := m.svc.AppendAudit(ctx, tenant, recs...)
			if err == nil {
				break
			}
			m.svc.logger.WarnContext(ctx, "audit write failed", "tenant_id", tenant, "attempt", attempt+1, "err", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
}
