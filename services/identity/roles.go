package identity

import (
	"slices"

	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// roleRank orders roles for the no-escalation rule: nobody may grant a role that
// ranks above their own highest. Custom roles rank with user, so only admins can hand
// out admin.
func roleRank(role string) int {
	switch role {
	case auth.RoleAdmin:
		return 3
	case auth.RoleReadonly:
		return 1
	default:
		return 2
	}
}

func highestRank(roles []string) int {
	best := 0
	for _, r := range roles {
		best = max(best, roleRank(r))
	}
	return best
}

// checkGrant refuses roles above the caller's own.
func checkGrant(p *auth.Principal, roles ...string) error {
	if p == nil || p.IsOperator() {
		return nil
	}
	mine := highestRank(p.Roles)
	for _, r := range roles {
		if roleRank(r) > mine {
			return apierr.New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_ROLE_ESCALATION,
				"cannot grant role %q: it ranks above the caller's own", r)
		}
	}
	return nil
}

// allRoles is the primary role followed by the extra roles, without repeats.
func allRoles(primary string, extra []string) []string {
	out := []string{primary}
	for _, r := range extra {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}
