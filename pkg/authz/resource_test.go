package authz_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
)

type recordingChecker struct {
	action string
	res    authz.Resource
	per    bool
}

func (r *recordingChecker) CheckResource(_ context.Context, _ *auth.Principal, action string, res authz.Resource) error {
	r.action, r.res = action, res
	if res.OwnerID == "someone-else" {
		return apierr.PermissionDenied("no")
	}
	return nil
}

func (r *recordingChecker) PerResource(context.Context, *auth.Principal, string, string) (bool, error) {
	return r.per, nil
}

func TestGuard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// Without a guard (an authorizer without resource checks) nothing is checked
	// per resource and explicit checks refuse: code keeps to its own rules.
	var none *authz.Guard
	require.Nil(t, authz.GuardFrom(ctx))
	per, err := none.PerResource(ctx)
	require.NoError(t, err)
	require.False(t, per)
	require.Equal(t, codes.PermissionDenied, status.Code(none.Check(ctx, authz.Resource{Type: "memory"})))

	rc := &recordingChecker{per: true}
	g := authz.NewGuard(rc, &auth.Principal{TenantID: "t"}, perm("memory.list"))
	ctx = authz.WithGuard(ctx, g)
	require.Same(t, g, authz.GuardFrom(ctx))
	require.Equal(t, "list", g.Action())
	per, err = g.PerResource(ctx)
	require.NoError(t, err)
	require.True(t, per)
	// The declared action and resource type are used unless given.
	require.NoError(t, g.Check(ctx, authz.Resource{OwnerID: "me"}))
	require.Equal(t, "list", rc.action)
	require.Equal(t, "memory", rc.res.Type)
	require.Equal(t, codes.PermissionDenied, status.Code(g.CheckAction(ctx, "read", authz.Resource{OwnerID: "someone-else"})))
	require.Equal(t, "read", rc.action)
}
