package webhooks

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
)

// eventTypeDef is one entry of the event catalogue, kept in code so it ships with
// the binary that emits the events.
type eventTypeDef struct {
	Type        string
	Description string
	Schema      map[string]any
	Example     map[string]any
}

func obj(required []string, props map[string]any) map[string]any {
	req := make([]any, len(required))
	for i, r := range required {
		req[i] = r
	}
	return map[string]any{
		"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
		"required": req, "properties": props,
	}
}

var (
	str     = map[string]any{"type": "string"}
	uuidStr = map[string]any{"type": "string", "format": "uuid"}
	ts      = map[string]any{"type": "string", "format": "date-time"}
	anyObj  = map[string]any{"type": "object"}
	integer = map[string]any{"type": "integer"}
)

var identitySchema = obj([]string{"id", "tenant_id", "external_id"}, map[string]any{
	"id": uuidStr, "tenant_id": uuidStr, "external_id": str, "kind": str, "role": str,
	"claims": anyObj, "create_time": ts, "update_time": ts,
})

var memorySchema = obj([]string{"id", "identity_id"}, map[string]any{
	"id": uuidStr, "identity_id": uuidStr, "type": str, "text": str, "metadata": anyObj,
	"create_time": ts, "update_time": ts, "expire_time": ts,
})

var policySchema = obj([]string{"id"}, map[string]any{
	"id": uuidStr, "name": str, "description": str, "rules": map[string]any{"type": "array"},
	"create_time": ts, "update_time": ts,
})

var quotaSchema = obj([]string{"metric", "limit", "used"}, map[string]any{
	"metric": str, "limit": integer, "used": integer, "period_start": ts, "period_end": ts,
})

var ssoProviderSchema = obj([]string{"id", "tenant_id", "name"}, map[string]any{
	"id": uuidStr, "tenant_id": uuidStr, "name": str, "display_name": str, "preset": str, "issuer_url": str,
	"client_id": str, "has_client_secret": map[string]any{"type": "boolean"}, "is_active": map[string]any{"type": "boolean"},
	"create_time": ts, "update_time": ts,
})

// erasedSchema is the data of identity.erased and tenant.erased: ids only, never
// the erased personal data.
var erasedSchema = obj([]string{"erasure_id"}, map[string]any{
	"erasure_id": uuidStr, "identity_id": uuidStr, "tenant_id": uuidStr,
})

var erasureCompletedSchema = obj([]string{"erasure_id", "subject_id"}, map[string]any{
	"erasure_id": uuidStr, "subject_id": uuidStr,
})

var exSsoProvider = map[string]any{
	"id": "01936b2e-5e00-7c3e-9d2b-1a2b3c4d5e6f", "tenant_id": "01936b2e-0000-7000-8000-000000000001",
	"name": "okta", "display_name": "Sign in with Okta", "preset": "SSO_PROVIDER_PRESET_GENERIC",
	"issuer_url": "https://acme.okta.com", "client_id": "0oa1b2c3", "has_client_secret": true, "is_active": true,
}

var exIdentity = map[string]any{
	"id": "01936b2e-6f1a-7c3e-9d2b-1a2b3c4d5e6f", "tenant_id": "01936b2e-0000-7000-8000-000000000001",
	"external_id": "user@example.com", "kind": "IDENTITY_KIND_USER", "role": "user",
	"claims": map[string]any{"name": "John Doe"},
}

var exMemory = map[string]any{
	"id": "01936b2e-7a00-7c3e-9d2b-1a2b3c4d5e6f", "identity_id": "01936b2e-6f1a-7c3e-9d2b-1a2b3c4d5e6f",
	"type": "preference", "text": "Prefers dark mode",
}

var catalogue = []eventTypeDef{
	{"tenant.updated", "A tenant's name or settings (self-registration, MFA required, password minimum, session cap) changed.",
		obj([]string{"id", "slug"}, map[string]any{"id": uuidStr, "slug": str, "name": str, "settings": map[string]any{"type": "object"}, "update_time": ts}),
		map[string]any{"id": "01936b2e-0000-7000-8000-000000000001", "slug": "acme", "name": "Acme",
			"settings": map[string]any{"mfa_required": true, "password_min_length": 12}}},
	{"identity.created", "An identity (user, agent or service) was created.", identitySchema, exIdentity},
	{"identity.updated", "An identity's role, claims or state changed.", identitySchema, exIdentity},
	{"identity.deleted", "An identity was deleted. A soft delete (the default) keeps its memories, which come back if the identity is restored within the tenant's restore window; a purge (hard delete, or the retention sweeper at the end of the window) is followed by identity.purged, and its memories are deleted.", identitySchema, exIdentity},
	{"identity.restored", "A soft-deleted identity was restored within the tenant's restore window and is active again, with its memories; its sessions and API keys stay revoked.", identitySchema, exIdentity},
	{"identity.purged", "An identity was purged (hard delete or the end of its restore window); the memory service deletes its memories. Its usage records stay. Id only.",
		obj([]string{"identity_id"}, map[string]any{"identity_id": uuidStr}),
		map[string]any{"identity_id": "01936b2e-6f1a-7c3e-9d2b-1a2b3c4d5e6f"}},
	{"identity.tokens_revoked", "An identity lost a role: its access tokens issued before min_generation are refused everywhere.",
		obj([]string{"identity_id", "min_generation", "revoke_time"}, map[string]any{
			"identity_id": uuidStr, "min_generation": map[string]any{"type": "integer"}, "revoke_time": ts,
		}),
		map[string]any{"identity_id": "01936b2e-6f1a-7c3e-9d2b-1a2b3c4d5e6f", "min_generation": 2, "revoke_time": "2026-01-01T00:00:00Z"}},
	{"identity.erased", "An identity is being erased (GDPR): its rows in the identity service are gone and its data key destroyed; every other service now removes its data. Ids only.",
		erasedSchema, map[string]any{"erasure_id": "01936b2e-9d00-7c3e-9d2b-1a2b3c4d5e6f", "identity_id": "01936b2e-6f1a-7c3e-9d2b-1a2b3c4d5e6f"}},
	{"identity.erasure.completed", "Every service removed its part of an identity's erasure; the receipt is COMPLETED.",
		erasureCompletedSchema, map[string]any{"erasure_id": "01936b2e-9d00-7c3e-9d2b-1a2b3c4d5e6f", "subject_id": "01936b2e-6f1a-7c3e-9d2b-1a2b3c4d5e6f"}},
	{"tenant.erased", "A whole tenant is being erased: every identity's and the tenant's data keys are destroyed; every service now removes the tenant's data.",
		erasedSchema, map[string]any{"erasure_id": "01936b2e-9d00-7c3e-9d2b-1a2b3c4d5e6f", "tenant_id": "01936b2e-0000-7000-8000-000000000001"}},
	{"tenant.erasure.completed", "Every service removed its part of a tenant's erasure; the receipt is COMPLETED.",
		erasureCompletedSchema, map[string]any{"erasure_id": "01936b2e-9d00-7c3e-9d2b-1a2b3c4d5e6f", "subject_id": "01936b2e-0000-7000-8000-000000000001"}},
	{"erasure.progress", "A service reports what it removed for an erasure (counts by kind); the identity service adds it to the receipt.",
		obj([]string{"erasure_id", "service", "counts"}, map[string]any{
			"erasure_id": uuidStr, "service": str,
			"counts": map[string]any{"type": "array", "items": obj([]string{"kind", "count"}, map[string]any{"kind": str, "count": integer})},
		}),
		map[string]any{"erasure_id": "01936b2e-9d00-7c3e-9d2b-1a2b3c4d5e6f", "service": "memory",
			"counts": []any{map[string]any{"kind": "memories", "count": 120}, map[string]any{"kind": "memory_versions", "count": 131}}}},
	{"sso.provider.created", "A single sign-on (OIDC) provider was configured; the client secret is never included.", ssoProviderSchema, exSsoProvider},
	{"sso.provider.updated", "A single sign-on provider's settings changed.", ssoProviderSchema, exSsoProvider},
	{"sso.provider.deleted", "A single sign-on provider was deleted; sign-ins through it stop.", ssoProviderSchema, exSsoProvider},
	{"memory.created", "A memory was stored for an identity.", memorySchema, exMemory},
	{"memory.updated", "A memory's text or metadata changed.", memorySchema, exMemory},
	{"memory.deleted", "A memory was deleted.", memorySchema, exMemory},
	{"memory.embedded", "A memory's embedding was computed and indexed.", memorySchema, exMemory},
	{"memory.expired", "A memory reached its expiry time and was removed.", memorySchema, exMemory},
	{"policy.created", "An access policy was created.", policySchema, map[string]any{"id": "01936b2e-8b00-7c3e-9d2b-1a2b3c4d5e6f", "name": "agents-read-memory"}},
	{"policy.updated", "An access policy changed.", policySchema, map[string]any{"id": "01936b2e-8b00-7c3e-9d2b-1a2b3c4d5e6f", "name": "agents-read-memory"}},
	{"policy.deleted", "An access policy was deleted.", policySchema, map[string]any{"id": "01936b2e-8b00-7c3e-9d2b-1a2b3c4d5e6f", "name": "agents-read-memory"}},
	{"usage.quota.warning", "A tenant used 80% of a quota in the current period.", quotaSchema, map[string]any{"metric": "memories", "limit": 1000, "used": 800}},
	{"usage.quota.exceeded", "A tenant reached a quota; further usage is refused.", quotaSchema, map[string]any{"metric": "memories", "limit": 1000, "used": 1000}},
	{"webhook.endpoint.disabled", "The server disabled a webhook: it answered 410 Gone or kept failing for days.",
		obj([]string{"webhook_id", "reason"}, map[string]any{"webhook_id": uuidStr, "url": str, "reason": str, "failing_since": ts}),
		map[string]any{"webhook_id": "01936b2e-9c00-7c3e-9d2b-1a2b3c4d5e6f", "url": "https://example.com/hook", "reason": "WEBHOOK_DISABLED_REASON_GONE"}},
	{"webhook.test", "A test event sent by TestWebhook or SendTestEvent.", obj(nil, map[string]any{}), map[string]any{"message": "hello"}},
}

// eventTypes returns the catalogue as API messages, ordered by type, optionally
// only one area.
func eventTypes(area string) ([]*eventsv1.EventType, error) {
	defs := slices.Clone(catalogue)
	slices.SortFunc(defs, func(a, b eventTypeDef) int { return strings.Compare(a.Type, b.Type) })
	var out []*eventsv1.EventType
	for _, d := range defs {
		a, _, _ := strings.Cut(d.Type, ".")
		if area != "" && a != area {
			continue
		}
		schema, err := structpb.NewStruct(d.Schema)
		if err != nil {
			return nil, err
		}
		example, err := structpb.NewStruct(d.Example)
		if err != nil {
			return nil, err
		}
		out = append(out, &eventsv1.EventType{Type: d.Type, Area: a, Description: d.Description, DataSchema: schema, Example: example})
	}
	return out, nil
}

// patternsFor are the subscription patterns that match eventType: the type itself,
// "*", and every dotted prefix with ".*" ("usage.quota.exceeded" is matched by
// "usage.*" and "usage.quota.*").
func patternsFor(eventType string) []string {
	out := []string{eventType, "*"}
	for i := range len(eventType) {
		if eventType[i] == '.' {
			out = append(out, eventType[:i]+".*")
		}
	}
	return out
}

// typeFilter splits an API type filter into an exact type or a prefix.
func typeFilter(t string) (exact, prefix *string) {
	if t == "" {
		return nil, nil
	}
	if p, ok := strings.CutSuffix(t, ".*"); ok {
		p += "."
		return nil, &p
	}
	return &t, nil
}
