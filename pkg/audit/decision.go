package audit

import (
	"context"

	"github.com/manushya-ai/manushya/pkg/policyengine"
)

// decisionDetail is the After of an authorization decision record: what decided
// and why, so a denial can be explained from the audit log alone.
type decisionDetail struct {
	Allow      bool             `json:"allow"`
	Permission string           `json:"permission"`
	Reason     string           `json:"reason"`
	Policy     *decisionPolicy  `json:"policy,omitempty"`
	Cached     bool             `json:"cached,omitempty"`
	Principal  decisionIdentity `json:"principal"`
	OwnerID    string           `json:"resource_owner_id,omitempty"`
}

type decisionPolicy struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Version  int32  `json:"version"`
	Effect   string `json:"effect"`
	Priority int32  `json:"priority"`
}

type decisionIdentity struct {
	Roles  []string `json:"roles,omitempty"`
	Scopes []string `json:"scopes,omitempty"`
}

// DecisionRecorder returns the policy engine's OnDecision hook: every decision it
// is handed (denials, and the configured sample of allows) becomes a record with
// action "authz.<resource>.<action>", result denied or success, and the
// decisive policy and reason in After. A nil sink gives a nil hook.
func DecisionRecorder(sink Sink) func(ctx context.Context, tenantID string, in policyengine.Input, d policyengine.Decision) {
	if sink == nil {
		return nil
	}
	return func(ctx context.Context, tenantID string, in policyengine.Input, d policyengine.Decision) {
		permission := in.Resource.Type + "." + in.Action
		rec := FromRequest(ctx, tenantID, "authz."+permission)
		if rec.Actor.IdentityID == "" {
			rec.Actor.IdentityID, rec.Actor.Kind = in.Principal.IdentityID, in.Principal.Kind
		}
		rec.ResourceType, rec.ResourceID = in.Resource.Type, in.Resource.ID
		detail := decisionDetail{
			Allow: d.Allow, Permission: permission, Reason: d.Reason(), Cached: d.Cached,
			Principal: decisionIdentity{Roles: in.Principal.Roles, Scopes: in.Principal.Scopes}, OwnerID: in.Resource.OwnerID,
		}
		if e := d.Decisive; e != nil {
			detail.Policy = &decisionPolicy{ID: e.PolicyID, Name: e.Name, Version: e.Version, Effect: string(e.Effect), Priority: e.Priority}
		}
		rec.After = JSON(detail)
		if !d.Allow {
			rec.Result = ResultDenied
		}
		Emit(ctx, sink, rec)
	}
}
