package memory

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/services/memory/store"
)

// Who may touch a memory is decided in two layers.
//
// Ownership is the service's own rule and lives in the queries: a caller sees the
// memories it owns or keeps as agent (admins, service identities and, for reads,
// readonly identities see the tenant's). Rows outside it are never fetched.
//
// Tenant policies add to and take from that through the request's authz.Guard,
// with the memory's attributes as input.resource (owner_id, tenant_id, id and
// attributes {type, agent_id, session_id, metadata}):
//
//   - naming another identity (identity_id of list, search and create, or a memory
//     of another identity by id) is allowed when a policy allows the request's
//     action on a memory of that owner, such as "an agent may read the memories
//     of the identity it acts for";
//   - when some policy in scope reads the resource (an attribute rule such as
//     "deny memories whose metadata.classification is secret"), each memory a
//     call returns or changes is decided on its own and the denied ones are left
//     out of lists and searches and are NOT_FOUND for get, update, delete and
//     restore, exactly like another identity's memories, so a denial does not
//     reveal that the memory exists. Tenants without such a policy pay nothing
//     per row (authz.Guard.PerResource).

// caller is the authenticated principal of a request, resolved for this service.
// It lives for one request and keeps its context for the policy checks made deep
// in query building.
type caller struct {
	p      *auth.Principal
	tenant uuid.UUID
	self   uuid.UUID // uuid.Nil when the credential has no identity

	ctx   context.Context
	guard *authz.Guard // nil when no policy engine decides (built-in roles only)

	perRowKnown bool
	perRow      bool
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
	c := &caller{p: p, tenant: tenant, ctx: ctx, guard: authz.GuardFrom(ctx)}
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

// perResource reports, once per request, whether some policy in scope reads the
// memory's attributes, so each memory must be decided on its own.
func (c *caller) perResource() (bool, error) {
	if !c.perRowKnown {
		per, err := c.guard.PerResource(c.ctx)
		if err != nil {
			return false, err
		}
		c.perRow, c.perRowKnown = per, true
	}
	return c.perRow, nil
}

// policyAllows asks the tenant's policies about the request's action on r. A
// denial is false; a failure to decide (policies unavailable) is an error.
func (c *caller) policyAllows(r authz.Resource) (bool, error) {
	err := c.guard.Check(c.ctx, r)
	if err == nil {
		return true, nil
	}
	var ae *apierr.Error
	if errors.As(err, &ae) && ae.Code == codes.PermissionDenied {
		return false, nil
	}
	return false, err
}

// canSee reports whether the caller may read (write=false) or change m: its
// ownership rule and, when needed, the tenant's policies on m's attributes.
// Memories it may not see are reported as NOT_FOUND, like those of other tenants.
func (c *caller) canSee(m store.Memory, write bool) (bool, error) {
	if c.anyIdentity(write) || c.owns(m) {
		per, err := c.perResource()
		if err != nil || !per {
			return err == nil, err
		}
	}
	// Another identity's memory (granted only by a policy), or one an attribute
	// rule may deny.
	return c.policyAllows(resourceOf(m))
}

// scope checks a requested identity scope and returns the predicate restricting a
// read or write to what the caller may touch ("" when it may touch everything).
// Naming another identity takes a policy allowing the action on its memories; the
// query is then restricted to that identity's memories.
func (c *caller) scope(field string, requested uuid.UUID, write bool, args *sqlArgs) (string, error) {
	if c.anyIdentity(write) {
		return "", nil
	}
	if c.self == uuid.Nil {
		return "", apierr.PermissionDenied("the credential has no identity to own memories")
	}
	if requested != uuid.Nil && requested != c.self {
		if err := c.mayActFor(field, requested); err != nil {
			return "", err
		}
		return "m.identity_id = " + args.add(requested), nil
	}
	p := args.add(c.self)
	return "(m.identity_id = " + p + " OR m.agent_id = " + p + ")", nil
}

// mayActFor checks that a policy allows the request's action on the memories of
// owner, another identity than the caller's.
func (c *caller) mayActFor(field string, owner uuid.UUID) error {
	ok, err := c.policyAllows(authz.Resource{Type: "memory", OwnerID: owner.String(), TenantID: c.tenant.String()})
	if err != nil {
		return err
	}
	if !ok {
		return apierr.PermissionDenied("%s: may only name the calling identity (no policy allows %s on the memories of %s)",
			field, c.guard.Action(), owner)
	}
	return nil
}

// visibleRows leaves out of a listing the memories an attribute policy denies
// the caller. Ownership is already in the query; this runs a decision per row
// only for tenants with a policy that reads the memory.
func visibleRows[T any](c *caller, items []T, memoryOf func(T) store.Memory) ([]T, error) {
	per, err := c.perResource()
	if err != nil || !per {
		return items, err
	}
	out := items[:0]
	for _, it := range items {
		ok, err := c.policyAllows(resourceOf(memoryOf(it)))
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, it)
		}
	}
	return out, nil
}

// visibleHits is visibleRows for both arms of a search.
func (c *caller) visibleHits(vhits, khits []hit) ([]hit, []hit, error) {
	of := func(h hit) store.Memory { return h.m }
	vhits, err := visibleRows(c, vhits, of)
	if err != nil {
		return nil, nil, err
	}
	khits, err = visibleRows(c, khits, of)
	return vhits, khits, err
}

func sameMemory(m store.Memory) store.Memory { return m }

// resourceOf is a memory as policies see it in input.resource.
func resourceOf(m store.Memory) authz.Resource {
	attrs := map[string]any{"type": m.Type}
	if m.AgentID != nil {
		attrs["agent_id"] = m.AgentID.String()
	}
	if m.SessionID != nil {
		attrs["session_id"] = *m.SessionID
	}
	if len(m.Metadata) > 0 {
		var md map[string]any
		if err := json.Unmarshal(m.Metadata, &md); err == nil && md != nil {
			attrs["metadata"] = md
		}
	}
	return authz.Resource{
		Type: "memory", ID: m.ID.String(), OwnerID: m.IdentityID.String(), TenantID: m.TenantID.String(), Attributes: attrs,
	}
}
