package policy

import (
	"slices"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	policyv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
	"github.com/manushya-ai/manushya/pkg/policyengine"
	"github.com/manushya-ai/manushya/services/policy/store"
	"github.com/manushya-ai/manushya/services/policy/store/sqlc"
)

var languages = map[policyv1.PolicyLanguage]policyengine.Language{
	policyv1.PolicyLanguage_POLICY_LANGUAGE_REGO:       policyengine.Rego,
	policyv1.PolicyLanguage_POLICY_LANGUAGE_JSON_LOGIC: policyengine.JSONLogic,
}

var effects = map[policyv1.Effect]policyengine.Effect{
	policyv1.Effect_EFFECT_ALLOW: policyengine.Allow,
	policyv1.Effect_EFFECT_DENY:  policyengine.Deny,
}

func languageToProto(l string) policyv1.PolicyLanguage {
	for k, v := range languages {
		if string(v) == l {
			return k
		}
	}
	return policyv1.PolicyLanguage_POLICY_LANGUAGE_UNSPECIFIED
}

func effectToProto(e string) policyv1.Effect {
	for k, v := range effects {
		if string(v) == e {
			return k
		}
	}
	return policyv1.Effect_EFFECT_UNSPECIFIED
}

func policyToProto(r sqlc.PolicyPolicy) *policyv1.Policy {
	r = store.Shipped(r)
	return &policyv1.Policy{
		Id: r.ID.String(), TenantId: r.TenantID.String(), Name: r.Name, Description: r.Description,
		Language: languageToProto(r.Language), Source: r.Source, Resource: r.Resource,
		Actions: slices.Clone(r.Actions), Effect: effectToProto(r.Effect), Priority: r.Priority,
		Enabled: r.Enabled, Roles: slices.Clone(r.Roles), Version: r.Version, Builtin: r.Builtin,
		CreateTime: timestamppb.New(r.CreateTime), UpdateTime: timestamppb.New(r.UpdateTime),
	}
}

func versionToProto(v sqlc.PolicyPolicyVersion) *policyv1.PolicyVersion {
	out := &policyv1.PolicyVersion{
		Policy: &policyv1.Policy{
			Id: v.PolicyID.String(), TenantId: v.TenantID.String(), Name: v.Name, Description: v.Description,
			Language: languageToProto(v.Language), Source: v.Source, Resource: v.Resource,
			Actions: slices.Clone(v.Actions), Effect: effectToProto(v.Effect), Priority: v.Priority,
			Enabled: v.Enabled, Roles: slices.Clone(v.Roles), Version: v.Version, Builtin: v.Builtin,
			CreateTime: timestamppb.New(v.PolicyCreateTime), UpdateTime: timestamppb.New(v.CreateTime),
		},
		ChangedFields: slices.Clone(v.ChangedFields),
		CreateTime:    timestamppb.New(v.CreateTime),
	}
	if v.ActorID != nil {
		out.ActorId = v.ActorID.String()
	}
	return out
}

// inputFromProto is a test request as the engine takes it.
func inputFromProto(in *policyv1.PolicyInput, tenant string) policyengine.Input {
	p, r := in.GetPrincipal(), in.GetResource()
	return policyengine.Input{
		Principal: policyengine.Principal{
			IdentityID: p.GetIdentityId(), TenantID: tenant, Kind: p.GetKind(),
			Roles: p.GetRoles(), Scopes: p.GetScopes(), Claims: p.GetClaims().AsMap(),
			ActsFor: policyengine.ActsFor(p.GetClaims().AsMap()),
		},
		Action: in.GetAction(),
		Resource: policyengine.Resource{
			Type: r.GetType(), ID: r.GetId(), OwnerID: r.GetOwnerId(), TenantID: tenant, Attributes: r.GetAttributes().AsMap(),
		},
	}
}

func evaluationToProto(e policyengine.Evaluation) *policyv1.PolicyEvaluation {
	out := &policyv1.PolicyEvaluation{
		PolicyId: e.PolicyID, PolicyName: e.Name, PolicyVersion: e.Version, Matched: e.Matched,
		Effect: effectToProto(string(e.Effect)), Priority: e.Priority, Reason: e.Reason, Decisive: e.Decisive,
	}
	if e.Err != nil {
		out.Error = e.Err.Error()
	}
	return out
}

func decisionToProto(d policyengine.Decision) *policyv1.TestPolicyResponse {
	out := &policyv1.TestPolicyResponse{
		Decision:           policyv1.Decision_DECISION_DENY,
		EvaluationDuration: durationpb.New(d.Duration),
	}
	if d.Allow {
		out.Decision = policyv1.Decision_DECISION_ALLOW
	}
	for _, e := range d.Evaluations {
		out.Evaluations = append(out.Evaluations, evaluationToProto(e))
	}
	return out
}

func okStatus() *spb.Status { return &spb.Status{Code: int32(codes.OK)} }
