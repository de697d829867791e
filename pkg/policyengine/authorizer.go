package policyengine

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/bus"
)

// Loader returns every policy of a tenant, the built-in ones included, enabled or
// not. The policy service provides one reading its store; any process with the
// database or a client of the policy service can provide another.
type Loader interface {
	LoadPolicies(ctx context.Context, tenantID string) ([]Policy, error)
}

// LoaderFunc adapts a function to Loader.
type LoaderFunc func(ctx context.Context, tenantID string) ([]Policy, error)

// LoadPolicies implements Loader.
func (f LoaderFunc) LoadPolicies(ctx context.Context, tenantID string) ([]Policy, error) {
	return f(ctx, tenantID)
}

// AuthorizerConfig configures an Authorizer; the zero value works.
type AuthorizerConfig struct {
	Options
	// MaxTenants bounds the compiled sets kept (default 1000).
	MaxTenants int
	// MaxAge is how long a set is trusted without a change event (default one
	// minute): a safety net for events missed while disconnected from NATS.
	MaxAge time.Duration
	// OnDecision, when set, receives every denial and a sample of allows (the audit
	// stream). It runs on the request's goroutine, so it must be quick.
	OnDecision func(ctx context.Context, tenantID string, in Input, d Decision)
	// AllowSample is the fraction of allows passed to OnDecision, 0 to 1.
	AllowSample float64
	// PrincipalClaims, when set, returns an identity's claims. They are loaded
	// (and kept for MaxAge, or until an identity.* event of the tenant) only for
	// requests that some policy in scope reads input.principal.claims or
	// input.principal.acts_for for; without it both are empty.
	PrincipalClaims func(ctx context.Context, tenantID, identityID string) (map[string]any, error)
}

// Authorizer decides requests with each tenant's compiled policies, loaded through
// a Loader and reloaded when the policy service publishes a change. It implements
// pkg/authz.Authorizer, so it plugs into every gRPC server's interceptor chain.
type Authorizer struct {
	loader Loader
	cfg    AuthorizerConfig
	log    *slog.Logger

	mu      sync.RWMutex
	tenants map[string]*tenantEntry
	subs    []*nats.Subscription

	claims claimsCache
}

var (
	_ authz.Authorizer      = (*Authorizer)(nil)
	_ authz.ResourceChecker = (*Authorizer)(nil)
)

type tenantEntry struct {
	set      *Set
	loadedAt time.Time
	gen      uint64        // bumped by every change event
	loading  chan struct{} // non-nil while a load runs; closed when it ends
	err      error         // the last load's error, for waiters
	setAt    uint64        // the generation set was loaded at
}

// NewAuthorizer returns an Authorizer loading policies through loader.
func NewAuthorizer(loader Loader, cfg AuthorizerConfig) *Authorizer {
	cfg.Options = cfg.withDefaults()
	if cfg.MaxTenants <= 0 {
		cfg.MaxTenants = 1000
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = time.Minute
	}
	return &Authorizer{
		loader: loader, cfg: cfg, log: cfg.Logger, tenants: map[string]*tenantEntry{},
		claims: claimsCache{maxAge: cfg.MaxAge, tenants: map[string]map[string]claimsEntry{}},
	}
}

// Subscribe reloads a tenant's policies whenever a policy.* event of that tenant is
// published on b. Core NATS delivers the stream's messages to every subscribed
// process as they are published, so no durable consumer is needed.
// Identity changes (identity.updated, identity.deleted) drop the tenant's cached
// claims the same way, so a withdrawn acts_for stops granting within a second.
func (a *Authorizer) Subscribe(b *bus.Bus) error {
	policies, err := b.Conn.Subscribe(bus.TypeFilter("policy.>"), func(m *nats.Msg) {
		if tenant := subjectTenant(m.Subject); tenant != "" {
			a.Invalidate(tenant)
		}
	})
	if err != nil {
		return err
	}
	identities, err := b.Conn.Subscribe(bus.TypeFilter("identity.>"), func(m *nats.Msg) {
		if tenant := subjectTenant(m.Subject); tenant != "" {
			a.claims.dropTenant(tenant)
		}
	})
	if err != nil {
		_ = policies.Unsubscribe()
		return err
	}
	a.mu.Lock()
	a.subs = append(a.subs, policies, identities)
	a.mu.Unlock()
	return nil
}

// subjectTenant is the tenant of manushya.<tenant>.<type...>.
func subjectTenant(subject string) string {
	parts := strings.SplitN(subject, ".", 3)
	if len(parts) == 3 {
		return parts[1]
	}
	return ""
}

// Close stops listening for changes.
func (a *Authorizer) Close() error {
	a.mu.Lock()
	subs := a.subs
	a.subs = nil
	a.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		errs = append(errs, sub.Unsubscribe())
	}
	return errors.Join(errs...)
}

// Invalidate marks a tenant's set out of date and reloads it in the background; the
// previous set keeps deciding until the new one is compiled.
func (a *Authorizer) Invalidate(tenantID string) {
	a.mu.Lock()
	e, ok := a.tenants[tenantID]
	if !ok {
		a.mu.Unlock()
		return
	}
	e.gen++
	a.mu.Unlock()
	go a.reload(tenantID)
}

func (a *Authorizer) reload(tenantID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.load(ctx, tenantID); err != nil {
		a.log.Warn("reload tenant policies", "tenant", tenantID, "err", err)
	}
}

// Set returns the tenant's compiled set, loading it when missing or out of date.
func (a *Authorizer) Set(ctx context.Context, tenantID string) (*Set, error) {
	// Every decision comes here: a shared lock keeps concurrent requests apart
	// from each other, and only a set past its age takes the exclusive one.
	a.mu.RLock()
	if e, ok := a.tenants[tenantID]; ok && e.set != nil && time.Since(e.loadedAt) < a.cfg.MaxAge {
		set := e.set
		a.mu.RUnlock()
		return set, nil
	}
	a.mu.RUnlock()
	a.mu.Lock()
	e, ok := a.tenants[tenantID]
	if ok && e.set != nil {
		set := e.set
		if time.Since(e.loadedAt) >= a.cfg.MaxAge && e.loading == nil {
			// Past its age: refresh in the background, keep deciding meanwhile. The
			// load marks the entry loading at once, so one request starts it.
			e.loadedAt = time.Now()
			go a.reload(tenantID)
		}
		a.mu.Unlock()
		return set, nil
	}
	a.mu.Unlock()
	return a.load(ctx, tenantID)
}

// load compiles the tenant's set, one load per tenant at a time; a load that a
// change event overtook runs again, so the stored set is never older than the
// newest event.
func (a *Authorizer) load(ctx context.Context, tenantID string) (*Set, error) {
	for {
		a.mu.Lock()
		e, ok := a.tenants[tenantID]
		if !ok {
			if len(a.tenants) >= a.cfg.MaxTenants {
				a.evictOne()
			}
			e = &tenantEntry{}
			a.tenants[tenantID] = e
		}
		if e.loading != nil {
			wait := e.loading
			a.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			a.mu.Lock()
			set, err := e.set, e.err
			stale := e.loading == nil && e.set != nil && e.loadedGen() != e.gen
			a.mu.Unlock()
			if set != nil && !stale {
				return set, nil
			}
			if set == nil && err != nil {
				return nil, err
			}
			continue
		}
		gen := e.gen
		done := make(chan struct{})
		e.loading = done
		a.mu.Unlock()

		set, err := a.compile(ctx, tenantID)
		a.cfg.Metrics.reloaded(err)

		a.mu.Lock()
		e.loading = nil
		e.err = err
		if err == nil {
			e.set, e.loadedAt = set, time.Now()
			e.setGen(gen)
		}
		again := err == nil && e.gen != gen
		a.mu.Unlock()
		close(done)
		if err != nil {
			return nil, err
		}
		if !again {
			return set, nil
		}
	}
}

func (a *Authorizer) compile(ctx context.Context, tenantID string) (*Set, error) {
	policies, err := a.loader.LoadPolicies(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return Compile(ctx, tenantID, policies, a.cfg.Options)
}

// evictOne drops a tenant that is not loading; called with mu held.
func (a *Authorizer) evictOne() {
	for id, e := range a.tenants {
		if e.loading == nil {
			delete(a.tenants, id)
			return
		}
	}
}

// Authorize implements authz.Authorizer: operator-only methods need the operator
// scope (no tenant policy can grant them); every other method is decided by the
// principal's tenant's policies, with the resource attributes the handler put in
// the context (WithResource), if any.
func (a *Authorizer) Authorize(ctx context.Context, p *auth.Principal, acc authz.Access) error {
	if acc.Public {
		return nil
	}
	if p == nil {
		return apierr.PermissionDenied("%s needs an authenticated caller", acc.Permission)
	}
	if acc.Operator {
		if p.IsOperator() {
			return nil
		}
		return apierr.PermissionDenied("%s needs the platform operator", acc.Permission)
	}
	res, _ := ResourceFrom(ctx)
	if res.Type == "" {
		res.Type = acc.Resource
	}
	return a.Check(ctx, p, acc.Action, res)
}

// CheckResource implements authz.ResourceChecker: Check under the interface
// services see through authz.Guard.
func (a *Authorizer) CheckResource(ctx context.Context, p *auth.Principal, action string, r authz.Resource) error {
	return a.Check(ctx, p, action, r)
}

// PerResource implements authz.ResourceChecker (see Set.PerResource).
func (a *Authorizer) PerResource(ctx context.Context, p *auth.Principal, resourceType, action string) (bool, error) {
	if p == nil || p.TenantID == "" {
		return false, nil
	}
	set, err := a.Set(ctx, p.TenantID)
	if err != nil {
		a.log.ErrorContext(ctx, "load tenant policies", "tenant", p.TenantID, "err", err)
		return false, apierr.Unavailable("authorization policies are unavailable")
	}
	return set.PerResource(resourceType, action, p.Roles), nil
}

// Check decides one action on a resource for p, for handlers that know the
// resource's attributes only after loading it. Deny is PERMISSION_DENIED; a tenant
// whose policies (or, when a policy reads them, the caller's claims) cannot be
// loaded is UNAVAILABLE (never allowed).
func (a *Authorizer) Check(ctx context.Context, p *auth.Principal, action string, res Resource) error {
	if p == nil || p.TenantID == "" {
		return apierr.PermissionDenied("%s.%s needs a caller in a tenant", res.Type, action)
	}
	set, err := a.Set(ctx, p.TenantID)
	if err != nil {
		a.log.ErrorContext(ctx, "load tenant policies", "tenant", p.TenantID, "err", err)
		return apierr.Unavailable("authorization policies are unavailable")
	}
	in := Input{
		Principal: Principal{IdentityID: p.IdentityID, TenantID: p.TenantID, Kind: p.Kind, Roles: p.Roles, Scopes: p.Scopes},
		Action:    action,
		Resource:  res,
	}
	if a.cfg.PrincipalClaims != nil && p.IdentityID != "" && set.readsClaims(res.Type, action) {
		e, err := a.claims.get(ctx, p.TenantID, p.IdentityID, a.cfg.PrincipalClaims)
		if err != nil {
			a.log.ErrorContext(ctx, "load principal claims", "tenant", p.TenantID, "identity", p.IdentityID, "err", err)
			return apierr.Unavailable("authorization policies are unavailable")
		}
		in.Principal.Claims, in.Principal.ActsFor = e.claims, e.actsFor
	}
	d := a.decide(ctx, set, &in)
	if !d.Allow {
		return apierr.PermissionDenied("%s.%s denied: %s", res.Type, action, d.Reason())
	}
	return nil
}

// Decide decides in with its tenant's policies (in.Principal.TenantID), as given:
// nothing is loaded into it.
func (a *Authorizer) Decide(ctx context.Context, in Input) (Decision, error) {
	if in.Principal.TenantID == "" {
		return Decision{}, errors.New("input names no tenant")
	}
	set, err := a.Set(ctx, in.Principal.TenantID)
	if err != nil {
		return Decision{}, err
	}
	return a.decide(ctx, set, &in), nil
}

func (a *Authorizer) decide(ctx context.Context, set *Set, in *Input) Decision {
	d := set.decide(ctx, in, false)
	if a.cfg.OnDecision != nil && (!d.Allow || (a.cfg.AllowSample > 0 && rand.Float64() < a.cfg.AllowSample)) {
		a.cfg.OnDecision(ctx, in.Principal.TenantID, *in, d)
	}
	return d
}

type resourceKey struct{}

// WithResource returns ctx carrying the attributes of the resource a request acts
// on, for the authorization interceptor (or Authorize) to decide with.
func WithResource(ctx context.Context, r Resource) context.Context {
	return context.WithValue(ctx, resourceKey{}, r)
}

// ResourceFrom returns the resource attributes put in ctx by WithResource.
func ResourceFrom(ctx context.Context) (Resource, bool) {
	r, ok := ctx.Value(resourceKey{}).(Resource)
	return r, ok
}

// loadedGen and setGen record which generation the stored set was loaded at.
func (e *tenantEntry) loadedGen() uint64 { return e.setAt }

func (e *tenantEntry) setGen(g uint64) { e.setAt = g }
