package authz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// perm is the access of a tenant-scoped method declaring permission.
func perm(permission string) authz.Access {
	res, act, _ := strings.Cut(permission, ".")
	return authz.Access{Method: "/test/" + permission, Permission: permission, Resource: res, Action: act}
}

func principal(roles []string, scopes ...string) *auth.Principal {
	return &auth.Principal{TenantID: "tenant-1", IdentityID: "identity-1", Kind: auth.KindUser, Roles: roles, Scopes: scopes}
}

var (
	admin    = []string{auth.RoleAdmin}
	readonly = []string{auth.RoleReadonly}
	user     = []string{auth.RoleUser}
	agent    = []string{auth.RoleAgent}
)

func requireDecision(t *testing.T, allow bool, p *auth.Principal, a authz.Access) {
	t.Helper()
	err := authz.BuiltinRoles{}.Authorize(context.Background(), p, a)
	if allow {
		require.NoError(t, err, "roles %v scopes %v must be allowed %s", p.Roles, p.Scopes, a.Permission)
		return
	}
	require.Error(t, err, "roles %v scopes %v must be denied %s", p.Roles, p.Scopes, a.Permission)
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED, apierr.ReasonOf(err))
}

func TestBuiltinRolesOperatorOnly(t *testing.T) {
	t.Parallel()
	createTenant, err := authz.AccessFor(identityv1.TenantService_CreateTenant_FullMethodName)
	require.NoError(t, err)
	require.True(t, createTenant.Operator)

	for name, tc := range map[string]struct {
		p     *auth.Principal
		allow bool
	}{
		"operator scope":                  {principal(nil, auth.ScopeOperator), true},
		"operator scope among others":     {principal(nil, "read", auth.ScopeOperator), true},
		"tenant admin":                    {principal(admin), false},
		"tenant admin with every scope":   {principal(admin, "*"), false},
		"tenant admin with admin scope":   {principal(admin, "admin"), false},
		"tenant admin with write scope":   {principal(admin, "write"), false},
		"resource scope":                  {principal(admin, "tenant.*"), false},
		"exact permission scope":          {principal(admin, "tenant.create"), false},
		"operator as a role is not scope": {principal([]string{auth.ScopeOperator}), false},
		"user":                            {principal(user), false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			requireDecision(t, tc.allow, tc.p, createTenant)
		})
	}

	err = authz.BuiltinRoles{}.Authorize(context.Background(), principal(admin), createTenant)
	require.ErrorContains(t, err, "tenant.create")
}

func TestBuiltinRolesByRole(t *testing.T) {
	t.Parallel()
	type row struct {
		roles      []string
		permission string
		allow      bool
	}
	var rows []row
	add := func(roles []string, allow bool, permissions ...string) {
		for _, p := range permissions {
			rows = append(rows, row{roles, p, allow})
		}
	}
	everything := []string{
		"identity.create", "identity.read", "identity.list", "identity.update", "identity.delete",
		"identity.read_self", "identity.set_password", "memory.create", "memory.search", "memory.delete",
		"api_key.create", "api_key.revoke", "webhook.create", "webhook.list", "policy.update",
		"session.cleanup", "audit.export", "usage.manage", "sso_provider.delete",
		"memory.settings_read", "memory.settings_update", "identity.erase", "identity.erasure_read",
		"identity.restore",
	}
	selfService := []string{
		"identity.read_self", "auth.logout", "auth.mfa_setup", "auth.mfa_verify", "auth.mfa_disable",
		"auth.change_password", "session.read", "session.list", "session.revoke",
	}

	add(admin, true, everything...)
	add(admin, true, selfService...)
	add([]string{"billing", auth.RoleAdmin}, true, "identity.delete")

	add(readonly, true, "identity.read", "identity.list", "memory.read", "memory.list", "memory.search",
		"webhook.read", "policy.read", "embedding.embed", "usage.read")
	add(readonly, true, selfService...)
	add(readonly, false, "identity.create", "identity.update", "identity.delete", "identity.set_password",
		"memory.create", "memory.update", "memory.delete", "api_key.create", "webhook.create",
		"policy.create", "session.cleanup", "usage.manage", "memory.settings_read", "memory.settings_update", "identity.erase", "identity.erasure_read",
		"identity.restore")

	for _, roles := range [][]string{user, agent} {
		add(roles, true, selfService...)
		add(roles, true, "memory.create", "memory.read", "memory.list", "memory.search", "memory.update",
			"memory.delete", "memory.restore")
		add(roles, false, "identity.create", "identity.read", "identity.list", "identity.update",
			"identity.delete", "api_key.create", "webhook.list", "policy.read", "session.cleanup", "embedding.embed",
			"memory.settings_read", "memory.settings_update", "identity.erase", "identity.erasure_read",
			"identity.restore")
	}

	add(nil, true, selfService...)
	add(nil, false, "identity.read", "memory.read", "memory.create")
	add([]string{"custom"}, false, "identity.read", "memory.read")

	for _, r := range rows {
		t.Run(strings.Join(r.roles, "+")+"/"+r.permission, func(t *testing.T) {
			t.Parallel()
			requireDecision(t, r.allow, principal(r.roles), perm(r.permission))
		})
	}
}

func TestBuiltinRolesOnRealMethods(t *testing.T) {
	t.Parallel()
	for method, allowUser := range map[string]bool{
		identityv1.IdentityService_GetMe_FullMethodName:          true,
		identityv1.IdentityService_CreateIdentity_FullMethodName: false,
		identityv1.AuthService_SetupMfa_FullMethodName:           true,
		identityv1.AuthService_ChangePassword_FullMethodName:     true,
		memoryv1.MemoryService_CreateMemory_FullMethodName:       true,
		memoryv1.MemoryService_SearchMemories_FullMethodName:     true,
	} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			a, err := authz.AccessFor(method)
			require.NoError(t, err)
			requireDecision(t, allowUser, principal(user), a)
			requireDecision(t, allowUser, principal(agent), a)
			requireDecision(t, true, principal(admin), a)
		})
	}
}

func TestBuiltinRolesScopesNarrow(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		roles  []string
		scopes []string
		allow  map[string]bool
	}{
		"admin, no scopes": {
			roles: admin,
			allow: map[string]bool{"identity.create": true, "identity.read": true, "memory.delete": true},
		},
		"admin, read": {
			roles:  admin,
			scopes: []string{"read"},
			allow: map[string]bool{
				"identity.read": true, "identity.list": true, "memory.search": true, "identity.read_self": true,
				"embedding.embed": true, "policy.test": false, "webhook.test": false,
				"identity.create": false, "identity.delete": false, "memory.create": false, "api_key.create": false,
				"auth.logout": false, "identity.restore": false,
			},
		},
		"admin, write": {
			roles:  admin,
			scopes: []string{"write"},
			allow:  map[string]bool{"identity.create": true, "identity.read": true, "memory.delete": true},
		},
		"admin, identity.*": {
			roles:  admin,
			scopes: []string{"identity.*"},
			allow: map[string]bool{
				"identity.create": true, "identity.read": true, "identity.delete": true,
				"memory.read": false, "memory.create": false, "api_key.create": false,
			},
		},
		"admin, one permission": {
			roles:  admin,
			scopes: []string{"memory.search"},
			allow:  map[string]bool{"memory.search": true, "memory.read": false, "memory.create": false},
		},
		"admin, read plus memory.*": {
			roles:  admin,
			scopes: []string{"read", "memory.*"},
			allow: map[string]bool{
				"identity.read": true, "memory.create": true, "memory.delete": true, "identity.create": false,
			},
		},
		"admin, star": {
			roles:  admin,
			scopes: []string{"*"},
			allow:  map[string]bool{"identity.create": true, "webhook.delete": true},
		},
		"admin, admin scope": {
			roles:  admin,
			scopes: []string{"admin"},
			allow:  map[string]bool{"identity.create": true, "webhook.delete": true},
		},
		"admin, unknown scope only": {
			roles:  admin,
			scopes: []string{"billing"},
			allow:  map[string]bool{"identity.read": false, "identity.create": false},
		},
		// Scopes narrow what the roles allow; they never add to it.
		"user, star": {
			roles:  user,
			scopes: []string{"*"},
			allow:  map[string]bool{"identity.create": false, "identity.read": false, "memory.create": true},
		},
		"user, identity.*": {
			roles:  user,
			scopes: []string{"identity.*"},
			allow:  map[string]bool{"identity.create": false, "identity.read_self": true, "memory.read": false},
		},
		"readonly, write": {
			roles:  readonly,
			scopes: []string{"write"},
			allow:  map[string]bool{"identity.create": false, "identity.read": true},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for permission, allow := range tc.allow {
				requireDecision(t, allow, principal(tc.roles, tc.scopes...), perm(permission))
			}
		})
	}
}

func TestBuiltinRolesDenialNamesThePermission(t *testing.T) {
	t.Parallel()
	err := authz.BuiltinRoles{}.Authorize(context.Background(), principal(user), perm("identity.create"))
	require.ErrorContains(t, err, "identity.create")
	err = authz.BuiltinRoles{}.Authorize(context.Background(), principal(admin, "read"), perm("identity.create"))
	require.ErrorContains(t, err, "scopes")
}
