package authz

import (
	"context"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
)

// Resource is what a request acts on, as policies see it in input.resource:
// {"type", "id", "owner_id", "tenant_id", "attributes"}. Handlers fill it once they
// have loaded the resource; the interceptor, deciding before that, knows only Type.
type Resource struct {
	Type       string
	ID         string
	OwnerID    string
	TenantID   string
	Attributes map[string]any
}

// ResourceChecker is an Authorizer that can also decide an action on a known
// resource, so attribute rules ("deny memories whose metadata.classification is
// secret") apply to what a handler loads. The policy engine implements it.
type ResourceChecker interface {
	// CheckResource decides action on r for p: nil to allow, PERMISSION_DENIED to
	// deny, UNAVAILABLE when the tenant's policies cannot be loaded.
	CheckResource(ctx context.Context, p *auth.Principal, action string, r Resource) error
	// PerResource reports whether decisions on resources of type for p and action
	// can differ from one resource to another beyond ownership, that is whether
	// some policy in scope reads the resource's id, owner or attributes. When it
	// is false a handler that already enforces ownership need not check each
	// resource it returns.
	PerResource(ctx context.Context, p *auth.Principal, resourceType, action string) (bool, error)
}

// Guard decides the current request's declared action on resources its handler
// has loaded. The server's authorization interceptor puts one in the context of
// every authorized call (GuardFrom), so services reach the policy engine without
// depending on it. A nil Guard has no engine behind it: it needs no per-resource
// checks and refuses every explicit check, so code falls back to its own rules.
type Guard struct {
	checker ResourceChecker
	p       *auth.Principal
	access  Access
}

// NewGuard binds checker to a request's principal and declared access.
func NewGuard(checker ResourceChecker, p *auth.Principal, a Access) *Guard {
	return &Guard{checker: checker, p: p, access: a}
}

type guardKey struct{}

// WithGuard returns ctx carrying g.
func WithGuard(ctx context.Context, g *Guard) context.Context {
	return context.WithValue(ctx, guardKey{}, g)
}

// GuardFrom returns the request's Guard, nil when none was set (an authorizer
// without resource checks, or a handler called outside the gRPC server).
func GuardFrom(ctx context.Context) *Guard {
	g, _ := ctx.Value(guardKey{}).(*Guard)
	return g
}

// Action is the action the request declares ("read", "list", ...), "" on a nil Guard.
func (g *Guard) Action() string {
	if g == nil {
		return ""
	}
	return g.access.Action
}

// Check decides the request's action on r (its type defaulting to the declared
// resource). A nil Guard refuses: there is no policy to grant anything beyond
// what the handler's own rules allow.
func (g *Guard) Check(ctx context.Context, r Resource) error {
	return g.CheckAction(ctx, g.Action(), r)
}

// CheckAction decides another action than the declared one on r, for handlers
// whose one call touches a resource in several ways.
func (g *Guard) CheckAction(ctx context.Context, action string, r Resource) error {
	if g == nil || g.checker == nil {
		return apierr.PermissionDenied("no policy allows %s.%s on this resource", r.Type, action)
	}
	if r.Type == "" {
		r.Type = g.access.Resource
	}
	return g.checker.CheckResource(ctx, g.p, action, r)
}

// PerResource reports whether the request's decision can differ between
// resources of its declared type (see ResourceChecker.PerResource); false on a nil
// Guard.
func (g *Guard) PerResource(ctx context.Context) (bool, error) {
	if g == nil || g.checker == nil {
		return false, nil
	}
	return g.checker.PerResource(ctx, g.p, g.access.Resource, g.access.Action)
}
