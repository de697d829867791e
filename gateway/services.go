package gateway

import (
	"context"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	embeddingv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	policyv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
)

// Upstream keys of Config.Upstreams: one per deployable service area.
const (
	UpstreamIdentity  = "identity"
	UpstreamMemory    = "memory"
	UpstreamEmbedding = "embedding"
	UpstreamPolicy    = "policy"
	UpstreamWebhooks  = "webhooks"
	UpstreamUsage     = "usage"
)

// upstreamKeys are the keys Config.Upstreams accepts; anything else is a typo.
var upstreamKeys = []string{
	UpstreamIdentity, UpstreamMemory, UpstreamEmbedding, UpstreamPolicy, UpstreamWebhooks, UpstreamUsage,
}

// route is one gRPC service exposed over REST and the upstream that serves it.
type route struct {
	upstream string
	service  string // full proto name, for logs
	register func(context.Context, *runtime.ServeMux, grpc.ClientConnInterface) error
}

// routes lists every service the gateway exposes. Adding a service is one line here.
// Order matters only for identical HTTP patterns: a later service wins.
var routes = []route{
	{UpstreamIdentity, "manushya.identity.v1.TenantService", via(identityv1.NewTenantServiceClient, identityv1.RegisterTenantServiceHandlerClient)},
	{UpstreamIdentity, "manushya.identity.v1.IdentityService", via(identityv1.NewIdentityServiceClient, identityv1.RegisterIdentityServiceHandlerClient)},
	{UpstreamIdentity, "manushya.identity.v1.AuthService", via(identityv1.NewAuthServiceClient, identityv1.RegisterAuthServiceHandlerClient)},
	{UpstreamIdentity, "manushya.identity.v1.CredentialService", via(identityv1.NewCredentialServiceClient, identityv1.RegisterCredentialServiceHandlerClient)},
	{UpstreamIdentity, "manushya.identity.v1.ApiKeyService", via(identityv1.NewApiKeyServiceClient, identityv1.RegisterApiKeyServiceHandlerClient)},
	{UpstreamIdentity, "manushya.identity.v1.InvitationService", via(identityv1.NewInvitationServiceClient, identityv1.RegisterInvitationServiceHandlerClient)},
	{UpstreamIdentity, "manushya.identity.v1.SessionService", via(identityv1.NewSessionServiceClient, identityv1.RegisterSessionServiceHandlerClient)},
	{UpstreamIdentity, "manushya.identity.v1.SsoService", via(identityv1.NewSsoServiceClient, identityv1.RegisterSsoServiceHandlerClient)},
	// GET /v1/identity/me/export is registered after /v1/identity/{id}/export (the
	// generated code keeps the proto's order) and so is tried first.
	{UpstreamIdentity, "manushya.identity.v1.ExportService", via(identityv1.NewExportServiceClient, identityv1.RegisterExportServiceHandlerClient)},
	{UpstreamIdentity, "manushya.identity.v1.ErasureService", via(identityv1.NewErasureServiceClient, identityv1.RegisterErasureServiceHandlerClient)},
	{UpstreamMemory, "manushya.memory.v1.MemoryService", via(memoryv1.NewMemoryServiceClient, memoryv1.RegisterMemoryServiceHandlerClient)},
	{UpstreamEmbedding, "manushya.embedding.v1.EmbeddingService", via(embeddingv1.NewEmbeddingServiceClient, embeddingv1.RegisterEmbeddingServiceHandlerClient)},
	{UpstreamPolicy, "manushya.policy.v1.PolicyService", via(policyv1.NewPolicyServiceClient, policyv1.RegisterPolicyServiceHandlerClient)},
	{UpstreamWebhooks, "manushya.webhooks.v1.WebhookService", via(webhooksv1.NewWebhookServiceClient, webhooksv1.RegisterWebhookServiceHandlerClient)},
	{UpstreamWebhooks, "manushya.events.v1.EventService", via(eventsv1.NewEventServiceClient, eventsv1.RegisterEventServiceHandlerClient)},
	{UpstreamWebhooks, "manushya.events.v1.AuditService", via(eventsv1.NewAuditServiceClient, eventsv1.RegisterAuditServiceHandlerClient)},
	{UpstreamUsage, "manushya.usage.v1.UsageService", via(usagev1.NewUsageServiceClient, usagev1.RegisterUsageServiceHandlerClient)},
	{UpstreamUsage, "manushya.admin.v1.RateLimitService", via(adminv1.NewRateLimitServiceClient, adminv1.RegisterRateLimitServiceHandlerClient)},
	{UpstreamUsage, "manushya.admin.v1.MonitoringService", via(adminv1.NewMonitoringServiceClient, adminv1.RegisterMonitoringServiceHandlerClient)},
	// The keyring runs in every process with a service; the identity process holds
	// most sealed fields, so it answers for encryption keys.
	{UpstreamIdentity, "manushya.admin.v1.EncryptionService", via(adminv1.NewEncryptionServiceClient, adminv1.RegisterEncryptionServiceHandlerClient)},
}

// via adapts a generated client constructor and Register<X>HandlerClient to one
// signature, so the table above stays one line per service.
func via[C any](
	newClient func(grpc.ClientConnInterface) C,
	register func(context.Context, *runtime.ServeMux, C) error,
) func(context.Context, *runtime.ServeMux, grpc.ClientConnInterface) error {
	return func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return register(ctx, mux, newClient(cc))
	}
}
