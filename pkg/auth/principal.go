package auth

import (
	"context"
	"slices"
)

// Kind of identity a principal stands for.
const (
	KindUser    = "user"
	KindAgent   = "agent"
	KindService = "service"
)

// Built-in roles.
const (
	RoleAdmin    = "admin"
	RoleUser     = "user"
	RoleAgent    = "agent"
	RoleReadonly = "readonly"
)

// ScopeOperator is the API-key scope of the platform operator, who manages tenants.
const ScopeOperator = "operator"

// Principal is the authenticated caller of a request.
type Principal struct {
	TenantID   string
	IdentityID string
	ExternalID string
	Kind       string
	Roles      []string
	// Scopes limit what an API key (or a scoped token) may do; empty means the
	// identity's roles alone decide.
	Scopes    []string
	APIKeyID  string
	SessionID string
	// MFAEnrollmentOnly marks the restricted token of a sign-in to a tenant that
	// requires MFA, before the identity has set it up: it may only call
	// MFAEnrollmentMethods.
	MFAEnrollmentOnly bool
	// Service names the suite's own service calling on its own behalf through a
	// service credential (service.go), e.g. "memory"; empty for every identity,
	// including identities of kind service, which are a tenant's callers.
	Service string
}

// IsInternal reports whether the principal is one of the suite's own services
// working for the tenant (not a tenant's caller): its calls are neither metered
// nor rate-limited, since the request that caused them already was.
func (p *Principal) IsInternal() bool { return p.Service != "" }

// HasRole reports whether the principal holds role.
func (p *Principal) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

// HasScope reports whether the principal's scopes include scope.
func (p *Principal) HasScope(scope string) bool { return slices.Contains(p.Scopes, scope) }

// IsOperator reports whether the principal is the platform operator.
func (p *Principal) IsOperator() bool { return p.HasScope(ScopeOperator) }

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of the request, if it was authenticated.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

type credentialErrorKey struct{}

// WithCredentialError records why the request's credential failed, for public
// methods that go on anonymously but report on credentials (introspection).
func WithCredentialError(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, credentialErrorKey{}, err)
}

// CredentialError returns the failure recorded by WithCredentialError, if any.
func CredentialError(ctx context.Context) error {
	err, _ := ctx.Value(credentialErrorKey{}).(error)
	return err
}
