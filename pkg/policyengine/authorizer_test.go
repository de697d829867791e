package policyengine_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
	"github.com/manushya-ai/manushya/pkg/policyengine"
)

func baselineAuthorizer() *policyengine.Authorizer {
	return policyengine.NewAuthorizer(policyengine.LoaderFunc(func(context.Context, string) ([]policyengine.Policy, error) {
		return policyengine.Baseline(), nil
	}), policyengine.AuthorizerConfig{})
}

// declaredAccesses lists the access of every RPC the protos declare.
func declaredAccesses(t *testing.T) []authz.Access {
	t.Helper()
	var out []authz.Access
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "manushya.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				a, err := authz.AccessFor("/" + string(sd.FullName()) + "/" + string(sd.Methods().Get(j).Name()))
				require.NoError(t, err)
				if !a.Public { // the interceptor never asks about public methods
					out = append(out, a)
				}
			}
		}
		return true
	})
	require.NotEmpty(t, out)
	return out
}

// The baseline policies decide every declared RPC exactly as the built-in role
// rules they replace, for every role and a spread of scopes.
func TestBaselineEquivalentToBuiltinRoles(t *testing.T) {
	t.Parallel()
	engine := baselineAuthorizer()
	roleSets := [][]string{nil, {"admin"}, {"user"}, {"agent"}, {"readonly"}, {"custom"}, {"user", "readonly"}}
	scopeSets := [][]string{nil, {"read"}, {"write"}, {"*"}, {"admin"}, {"identity.*"}, {"memory.search"}, {"read", "memory.*"},
		{"billing"}, {auth.ScopeOperator}}
	ctx := context.Background()
	n := 0
	for _, a := range declaredAccesses(t) {
		for _, roles := range roleSets {
			for _, scopes := range scopeSets {
				p := &auth.Principal{TenantID: tenantA, IdentityID: alice, Kind: "user", Roles: roles, Scopes: scopes}
				want := authz.BuiltinRoles{}.Authorize(ctx, p, a)
				got := engine.Authorize(ctx, p, a)
				require.Equal(t, want == nil, got == nil, "%s roles %v scopes %v: builtin %v, baseline %v", a.Method, roles, scopes, want, got)
				if got != nil {
					require.Equal(t, codes.PermissionDenied, status.Code(got))
				}
				n++
			}
		}
	}
	require.Greater(t, n, 1000)
}

// Restoring a soft-deleted identity is for admins only under the baselines, as
// under the built-in roles.
func TestBaselineRestoreIdentityAdminOnly(t *testing.T) {
	t.Parallel()
	engine := baselineAuthorizer()
	a, err := authz.AccessFor(identityv1.IdentityService_RestoreIdentity_FullMethodName)
	require.NoError(t, err)
	require.Equal(t, "identity.restore", a.Permission)
	for roles, allow := range map[string]bool{"admin": true, "user": false, "agent": false, "readonly": false, "custom": false} {
		p := &auth.Principal{TenantID: tenantA, IdentityID: alice, Kind: "user", Roles: []string{roles}}
		err := engine.Authorize(context.Background(), p, a)
		require.Equal(t, allow, err == nil, "%s: %v", roles, err)
	}
}

func TestAuthorizerUsesResourceAttributes(t *testing.T) {
	t.Parallel()
	policies := append(policyengine.Baseline(),
		pol("deny-secret", policyengine.Deny, 500, "memory", []string{"read"}, nil, policyengine.JSONLogic,
			`{"==": [{"var": "resource.attributes.metadata.classification"}, "secret"]}`))
	engine := policyengine.NewAuthorizer(policyengine.LoaderFunc(func(context.Context, string) ([]policyengine.Policy, error) {
		return policies, nil
	}), policyengine.AuthorizerConfig{})
	p := &auth.Principal{TenantID: tenantA, IdentityID: alice, Roles: []string{"user"}}
	read := authz.Access{Permission: "memory.read", Resource: "memory", Action: "read"}
	require.NoError(t, engine.Authorize(context.Background(), p, read))
	ctx := policyengine.WithResource(context.Background(), policyengine.Resource{Type: "memory", ID: "m1",
		Attributes: map[string]any{"metadata": map[string]any{"classification": "secret"}}})
	err := engine.Authorize(ctx, p, read)
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.ErrorContains(t, err, "memory.read denied")
	require.NoError(t, engine.Check(context.Background(), p, "read", policyengine.Resource{Type: "memory"}))
}

func TestAuthorizerFailsClosed(t *testing.T) {
	t.Parallel()
	var loads atomic.Int32
	engine := policyengine.NewAuthorizer(policyengine.LoaderFunc(func(context.Context, string) ([]policyengine.Policy, error) {
		loads.Add(1)
		return nil, errors.New("database down")
	}), policyengine.AuthorizerConfig{})
	p := &auth.Principal{TenantID: tenantA, IdentityID: alice, Roles: []string{"admin"}}
	err := engine.Authorize(context.Background(), p, authz.Access{Permission: "memory.read", Resource: "memory", Action: "read"})
	require.Equal(t, codes.Unavailable, status.Code(err))
	// Operator-only methods are not for tenant policies to grant, whatever the roles.
	err = engine.Authorize(context.Background(), p, authz.Access{Permission: "tenant.create", Resource: "tenant", Action: "create", Operator: true})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.NoError(t, engine.Authorize(context.Background(), &auth.Principal{Scopes: []string{auth.ScopeOperator}},
		authz.Access{Permission: "tenant.create", Resource: "tenant", Action: "create", Operator: true}))
	require.Equal(t, codes.PermissionDenied, status.Code(engine.Authorize(context.Background(), &auth.Principal{Roles: []string{"admin"}},
		authz.Access{Permission: "memory.read", Resource: "memory", Action: "read"})))
}

func TestTenantsHaveTheirOwnSets(t *testing.T) {
	t.Parallel()
	engine := policyengine.NewAuthorizer(policyengine.LoaderFunc(func(_ context.Context, tenant string) ([]policyengine.Policy, error) {
		ps := policyengine.Baseline()
		if tenant == tenantA {
			ps = append(ps, always("lockdown", policyengine.Deny, 9000, "*", "*"))
		}
		return ps, nil
	}), policyengine.AuthorizerConfig{})
	read := authz.Access{Permission: "memory.read", Resource: "memory", Action: "read"}
	require.Error(t, engine.Authorize(context.Background(), &auth.Principal{TenantID: tenantA, Roles: []string{"admin"}}, read))
	require.NoError(t, engine.Authorize(context.Background(), &auth.Principal{TenantID: tenantB, Roles: []string{"admin"}}, read))
}
