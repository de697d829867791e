package memory

import (
	"context"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/services/memory/store"
)

// caller is the authenticated principal of a request, resolved for this service.
type caller struct {
	p      *auth.Principal
	tenant uuid.UUID
	self   uuid.UUID // uuid.Nil when the credential has no identity
}

func callerFrom(ctx context.Context) (*caller, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, apierr.Unauthenticated(0, "no credential")
	}
	tenant, err := uuid.Parse(p.TenantID)
	if err != nil {
		return nil, apierr.PermissionDenied("the credential belongs to no tenant")
	}
	c := &caller{p: p, tenant: tenant}
	if p.IdentityID != "" {
		if id, err := uuid.Parse(p.IdentityID); err == nil {
			c.self = id
		}
	}
	return c, nil
}

// anyIdentity reports whether the caller may act on every identity's memories in
// its tenant: admins and service identities always; readonly identities for reads.
func (c *caller) anyIdentity(write bool) bool {
	if c.p.HasRole(auth.RoleAdmin) || c.p.Kind == auth.KindService {
		return true
	}
	return !write && c.p.HasRole(auth.RoleReadonly)
}

// owns reports whether m is the caller's own: owned by it, or kept by it as agent.
func (c *caller) owns(m store.Memory) bool {
	if c.self == uuid.Nil {
		return false
	}
	return m.IdentityID == c.self || (m.AgentID != nil && *m.AgentID == c.self)
}

// canSee reports whether the caller may read (write=false) or change m. Memories
// it may not see are reported as NOT_FOUND, like those of other tenants.
func (c *caller) canSee(m store.Memory, write bool) bool {
	return c.anyIdentity(write) || c.owns(m)
}

// scope checks a requested identity scope and returns the predicate restricting a
// read or write to what the caller may touch ("" when it may touch everything).
func (c *caller) scope(field string, requested uuid.UUID, write bool, args *sqlArgs) (string, error) {
	if c.anyIdentity(write) {
		return "", nil
	}
	if c.self == uuid.Nil {
		return "", apierr.PermissionDenied("the credential has no identity to own memories")
	}
	if requested != uuid.Nil && requested != c.self {
		return "", apierr.PermissionDenied("%s: may only name the calling identity", field)
	}
	p := args.add(c.self)
	return "(m.identity_id = " + p + " OR m.agent_id = " + p + ")", nil
}
