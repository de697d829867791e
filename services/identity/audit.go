package identity

import (
	"context"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/audit"
)

// Authentication events go to the audit log from here: sign-in and token refresh
// are public calls (no principal yet), which the request audit interceptor
// leaves alone. Authenticated ones (logout, MFA verify and disable) are recorded
// by the interceptor like every mutating request.

// authAudit is one authentication event.
type authAudit struct {
	action     string // "auth.login", "auth.token.refresh"
	tenant     uuid.UUID
	identity   uuid.UUID // uuid.Nil when the identifier matched nobody
	externalID string    // the identifier typed, for sign-ins
	sessionID  uuid.UUID
	err        error  // nil: success
	reason     string // why it failed (or how it succeeded), for the record only
	method     string
}

// recordAuth hands the event to the audit sink (none: nothing). The caller's
// answer does not depend on it: a failed sign-in says the same whatever is
// recorded here.
func (s *Service) recordAuth(ctx context.Context, a authAudit) {
	if s.audit == nil || a.tenant == uuid.Nil {
		return
	}
	rec := audit.FromRequest(ctx, a.tenant.String(), a.action)
	rec.ResourceType = "identity"
	if a.identity != uuid.Nil {
		rec.Actor.IdentityID, rec.ResourceID = a.identity.String(), a.identity.String()
	}
	rec.Actor.ExternalID = a.externalID
	if a.sessionID != uuid.Nil {
		rec.Actor.SessionID = a.sessionID.String()
	}
	detail := map[string]string{}
	if a.reason != "" {
		detail["reason"] = a.reason
	}
	if a.method != "" {
		detail["method"] = a.method
	}
	if len(detail) > 0 {
		rec.After = audit.JSON(detail)
	}
	if a.err != nil {
		rec.Result = audit.ResultOf(a.err)
		rec.ErrorReason = int32(apierr.ReasonOf(a.err))
	}
	audit.Emit(ctx, s.audit, rec)
}
