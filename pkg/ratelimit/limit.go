package ratelimit

import (
	"fmt"
	"strings"
	"time"

	"github.com/manushya-ai/manushya/pkg/auth"
)

// Scope says whom a limit counts requests for.
type Scope int

// Scopes, numbered like manushya.admin.v1.RateLimitScope.
const (
	ScopeUnspecified Scope = iota
	ScopeRole
	ScopeTenant
	ScopeIdentity
	ScopeAPIKey
)

// scopes is the order limits are checked in.
var scopes = []Scope{ScopeTenant, ScopeRole, ScopeIdentity, ScopeAPIKey}

// String is the scope's name as it appears in keys and metrics.
func (s Scope) String() string {
	switch s {
	case ScopeRole:
		return "role"
	case ScopeTenant:
		return "tenant"
	case ScopeIdentity:
		return "identity"
	case ScopeAPIKey:
		return "api_key"
	}
	return "unspecified"
}

// ParseScope is the inverse of Scope.String.
func ParseScope(s string) (Scope, bool) {
	for _, sc := range scopes {
		if sc.String() == s {
			return sc, true
		}
	}
	return ScopeUnspecified, false
}

// Limit allows Rate cost units per Period to each caller it applies to.
type Limit struct {
	ID         string
	TenantID   string // empty: a global default
	Scope      Scope
	Subject    string // role name, identity id or API key id; empty: every one
	RouteGroup string // "" (every route), "memory", "memory.search"...
	Rate       int64
	Period     time.Duration
	Burst      int64 // 0: Rate
	Cost       int32 // units per request where the route sets none; 0: 1
	Shadow     bool
}

// Validate reports what makes l unusable.
func (l Limit) Validate() error {
	switch {
	case l.Scope < ScopeRole || l.Scope > ScopeAPIKey:
		return fmt.Errorf("rate limit %s: unknown scope %d", l.ID, l.Scope)
	case l.Rate < 1:
		return fmt.Errorf("rate limit %s: rate must be at least 1", l.ID)
	case l.Period < time.Second:
		return fmt.Errorf("rate limit %s: period must be at least 1s", l.ID)
	case l.Burst < 0 || l.Cost < 0:
		return fmt.Errorf("rate limit %s: burst and cost must not be negative", l.ID)
	case l.Scope == ScopeTenant && l.Subject != "":
		return fmt.Errorf("rate limit %s: the tenant scope takes no subject", l.ID)
	}
	return nil
}

// burst is the bucket size in cost units.
func (l Limit) burst() int64 {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Rate
}

// Policy names the limit in RateLimit-Policy and RateLimit headers.
func (l Limit) policyName() string {
	if l.ID != "" {
		return l.ID
	}
	name := l.Scope.String()
	if l.Subject != "" {
		name += "." + l.Subject
	}
	if l.RouteGroup != "" {
		name += "." + l.RouteGroup
	}
	return name
}

// DefaultLimits are the global defaults in force when no stored limit overrides
// them: per identity, by role, over every route. Admins and agents (machines) get
// more than people-facing roles.
func DefaultLimits() []Limit {
	return []Limit{
		{Scope: ScopeRole, Subject: "", Rate: 600, Period: time.Minute, Burst: 100},
		{Scope: ScopeRole, Subject: auth.RoleAdmin, Rate: 3000, Period: time.Minute, Burst: 300},
		{Scope: ScopeRole, Subject: auth.RoleAgent, Rate: 1200, Period: time.Minute, Burst: 200},
		{Scope: ScopeRole, Subject: auth.RoleReadonly, Rate: 300, Period: time.Minute, Burst: 60},
	}
}

// groupMatches reports whether a limit on group covers a request to route.
func groupMatches(group, route string) bool {
	return group == "" || group == route || strings.HasPrefix(route, group+".")
}

// specificity orders candidate limits of one scope; higher wins.
func specificity(l Limit) int {
	s := len(l.RouteGroup)
	if l.Subject != "" {
		s += 1 << 10
	}
	if l.TenantID != "" {
		s += 1 << 20
	}
	return s
}

// applied is one limit chosen for a request, with the counter key it uses.
type applied struct {
	limit Limit
	key   string
}

// subjectsFor lists the subjects of a scope that a principal stands for, with the
// part of the key that identifies the caller.
func matchSubject(l Limit, p *auth.Principal) (callerKey string, ok bool) {
	switch l.Scope {
	case ScopeTenant:
		return "", true
	case ScopeRole:
		if p.IdentityID == "" {
			return "", false
		}
		if l.Subject == "" {
			return p.IdentityID, len(p.Roles) > 0
		}
		return p.IdentityID, p.HasRole(l.Subject)
	case ScopeIdentity:
		if p.IdentityID == "" || (l.Subject != "" && l.Subject != p.IdentityID) {
			return "", false
		}
		return p.IdentityID, true
	case ScopeAPIKey:
		if p.APIKeyID == "" || (l.Subject != "" && l.Subject != p.APIKeyID) {
			return "", false
		}
		return p.APIKeyID, true
	}
	return "", false
}

// resolve picks, for each scope, the most specific limit of limits that applies to
// p calling route. limits holds the tenant's own limits and the global ones.
func resolve(limits []Limit, p *auth.Principal, route string, out []applied) []applied {
	for _, sc := range scopes {
		best, bestScore, bestCaller := Limit{}, -1, ""
		for _, l := range limits {
			if l.Scope != sc || !groupMatches(l.RouteGroup, route) {
				continue
			}
			caller, ok := matchSubject(l, p)
			if !ok {
				continue
			}
			score := specificity(l)
			// Among equally specific role limits (a caller with several roles), the
			// most generous wins: extra roles never take rights away.
			if score > bestScore || (score == bestScore && l.Rate*int64(best.Period) > best.Rate*int64(l.Period)) {
				best, bestScore, bestCaller = l, score, caller
			}
		}
		if bestScore >= 0 {
			out = append(out, applied{limit: best, key: Key(p.TenantID, best, bestCaller)})
		}
	}
	return out
}

// Key is the counter key of limit l for one caller: "{tenant}:<scope>[:<role>]
// [:<caller>]:<group>". The tenant is a Redis Cluster hash tag; "*" stands for every
// route.
func Key(tenant string, l Limit, caller string) string {
	var b strings.Builder
	b.Grow(len(tenant) + len(caller) + len(l.Subject) + len(l.RouteGroup) + 24)
	b.WriteByte('{')
	b.WriteString(tenant)
	b.WriteString("}:")
	b.WriteString(l.Scope.String())
	if l.Scope == ScopeRole {
		b.WriteByte(':')
		if l.Subject == "" {
			b.WriteByte('*')
		} else {
			b.WriteString(l.Subject)
		}
	}
	if caller != "" {
		b.WriteByte(':')
		b.WriteString(caller)
	}
	b.WriteByte(':')
	if l.RouteGroup == "" {
		b.WriteByte('*')
	} else {
		b.WriteString(l.RouteGroup)
	}
	return b.String()
}

// TenantOfKey returns the tenant a counter key belongs to.
func TenantOfKey(key string) (string, bool) {
	if !strings.HasPrefix(key, "{") {
		return "", false
	}
	tenant, rest, ok := strings.Cut(key[1:], "}:")
	if !ok || tenant == "" || rest == "" {
		return "", false
	}
	return tenant, true
}
