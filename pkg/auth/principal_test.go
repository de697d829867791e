package auth_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/auth"
)

func TestPrincipalRolesAndScopes(t *testing.T) {
	t.Parallel()
	p := &auth.Principal{
		Kind:   auth.KindUser,
		Roles:  []string{auth.RoleAdmin, "billing"},
		Scopes: []string{"read", "identity.*"},
	}
	require.True(t, p.HasRole(auth.RoleAdmin))
	require.True(t, p.HasRole("billing"))
	require.False(t, p.HasRole(auth.RoleReadonly))
	require.False(t, p.HasRole(""))
	require.True(t, p.HasScope("read"))
	require.True(t, p.HasScope("identity.*"))
	require.False(t, p.HasScope("write"))
	require.False(t, p.IsOperator())

	op := &auth.Principal{Kind: auth.KindService, Scopes: []string{auth.ScopeOperator}}
	require.True(t, op.IsOperator())
	require.False(t, op.HasRole(auth.RoleAdmin))

	// An operator role is not the operator: only the API-key scope is.
	require.False(t, (&auth.Principal{Roles: []string{auth.ScopeOperator}}).IsOperator())
	require.False(t, (&auth.Principal{}).IsOperator())
}

func TestPrincipalContext(t *testing.T) {
	t.Parallel()
	_, ok := auth.FromContext(context.Background())
	require.False(t, ok)

	p := &auth.Principal{TenantID: "t1", IdentityID: "i1"}
	got, ok := auth.FromContext(auth.WithPrincipal(context.Background(), p))
	require.True(t, ok)
	require.Same(t, p, got)

	got, ok = auth.FromContext(auth.WithPrincipal(context.Background(), nil))
	require.False(t, ok, "a nil principal is no principal")
	require.Nil(t, got)

	// An inner context overrides the outer principal.
	inner := &auth.Principal{TenantID: "t2"}
	got, ok = auth.FromContext(auth.WithPrincipal(auth.WithPrincipal(context.Background(), p), inner))
	require.True(t, ok)
	require.Same(t, inner, got)
}
