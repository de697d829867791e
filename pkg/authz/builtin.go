package authz

import (
	"context"
	"slices"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
)

// Authorizer decides whether p may perform a. It returns nil to allow, or an
// *apierr.Error (PERMISSION_DENIED) to deny.
type Authorizer interface {
	Authorize(ctx context.Context, p *auth.Principal, a Access) error
}

// readActions never change state.
// "test" is not among them: event.test and webhook.test send things.
var readActions = []string{"read", "list", "search", "read_self", "embed"}

// selfPermissions are what every authenticated identity may do about itself (the
// session methods only reach other identities' sessions for admins, which the
// handlers check). Each must be a permission some RPC declares.
var selfPermissions = []string{
	"identity.read_self", "identity.export_self", "auth.logout", "auth.mfa_setup", "auth.mfa_verify", "auth.mfa_disable",
	"auth.change_password", "session.read", "session.list", "session.revoke",
}

// BuiltinRoles is the authorizer in force until tenant policies decide: admins manage
// their tenant, readonly identities read it, users and agents act on themselves and
// their own memories (handlers check ownership), the operator manages tenants.
// API-key scopes narrow what the key's identity could do: "read" allows read actions,
// "write" also allows changes, "admin" or "*" allows whatever the roles allow.
type BuiltinRoles struct{}

// Authorize implements Authorizer.
func (BuiltinRoles) Authorize(_ context.Context, p *auth.Principal, a Access) error {
	if a.Operator {
		if p.IsOperator() {
			return nil
		}
		return apierr.PermissionDenied("%s needs the platform operator", a.Permission)
	}
	if !scopesAllow(p, a) {
		return apierr.PermissionDenied("the credential's scopes do not allow %s", a.Permission)
	}
	if rolesAllow(p, a) {
		return nil
	}
	return apierr.PermissionDenied("role does not allow %s", a.Permission)
}

func rolesAllow(p *auth.Principal, a Access) bool {
	switch {
	case p.HasRole(auth.RoleAdmin):
		return true
	case slices.Contains(selfPermissions, a.Permission):
		return true
	case p.HasRole(auth.RoleReadonly) && slices.Contains(readActions, a.Action):
		return true
	case (p.HasRole(auth.RoleUser) || p.HasRole(auth.RoleAgent)) && a.Resource == "memory" &&
		slices.Contains(MemoryOwnerActions, a.Action):
		// Ownership of the memory is checked by the memory service.
		return true
	}
	return false
}

// MemoryOwnerActions are what users and agents may do with their own memories.
// The tenant's memory settings (memory.settings_read, memory.settings_update)
// are not among them: they are the admins'.
var MemoryOwnerActions = []string{"create", "read", "list", "update", "delete", "restore", "search"}

func scopesAllow(p *auth.Principal, a Access) bool {
	if len(p.Scopes) == 0 {
		return true
	}
	for _, s := range p.Scopes {
		switch s {
		case "*", "admin":
			return true
		case "write":
			return true
		case "read":
			if slices.Contains(readActions, a.Action) {
				return true
			}
		case a.Permission, a.Resource + ".*":
			return true
		}
	}
	return false
}
