package policyengine

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// astValue builds input as an OPA value directly: converting a Go map through
// OPA's generic path on every decision costs more than evaluating most policies.
func (in *Input) astValue() (ast.Value, error) {
	claims, err := objectValue(in.Principal.Claims)
	if err != nil {
		return nil, fmt.Errorf("principal claims: %w", err)
	}
	attrs, err := objectValue(in.Resource.Attributes)
	if err != nil {
		return nil, fmt.Errorf("resource attributes: %w", err)
	}
	principal := ast.NewObject(
		[2]*ast.Term{keyIDentityID, ast.StringTerm(in.Principal.IdentityID)},
		[2]*ast.Term{keyTenantID, ast.StringTerm(in.Principal.TenantID)},
		[2]*ast.Term{keyKind, ast.StringTerm(in.Principal.Kind)},
		[2]*ast.Term{keyRoles, stringArray(in.Principal.Roles)},
		[2]*ast.Term{keyScopes, stringArray(in.Principal.Scopes)},
		[2]*ast.Term{keyClaims, ast.NewTerm(claims)},
		[2]*ast.Term{keyActsFor, stringArray(in.Principal.ActsFor)},
	)
	resource := ast.NewObject(
		[2]*ast.Term{keyType, ast.StringTerm(in.Resource.Type)},
		[2]*ast.Term{keyID, ast.StringTerm(in.Resource.ID)},
		[2]*ast.Term{keyOwnerID, ast.StringTerm(in.Resource.OwnerID)},
		[2]*ast.Term{keyTenantID, ast.StringTerm(in.Resource.TenantID)},
		[2]*ast.Term{keyAttributes, ast.NewTerm(attrs)},
	)
	return ast.NewObject(
		[2]*ast.Term{keyPrincipal, ast.NewTerm(principal)},
		[2]*ast.Term{keyAction, ast.StringTerm(in.Action)},
		[2]*ast.Term{keyResource, ast.NewTerm(resource)},
	), nil
}

func stringArray(ss []string) *ast.Term {
	if len(ss) == 0 {
		// Terms are not changed by evaluation, so every empty list can share one.
		return emptyArray
	}
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

var (
	emptyObject = ast.NewObject()
	emptyArray  = ast.ArrayTerm()
)

// The keys of input, made once: terms are immutable during evaluation, so every
// input shares them.
var (
	keyIDentityID = ast.StringTerm("identity_id")
	keyTenantID   = ast.StringTerm("tenant_id")
	keyKind       = ast.StringTerm("kind")
	keyRoles      = ast.StringTerm("roles")
	keyScopes     = ast.StringTerm("scopes")
	keyClaims     = ast.StringTerm("claims")
	keyActsFor    = ast.StringTerm("acts_for")
	keyType       = ast.StringTerm("type")
	keyID         = ast.StringTerm("id")
	keyOwnerID    = ast.StringTerm("owner_id")
	keyAttributes = ast.StringTerm("attributes")
	keyPrincipal  = ast.StringTerm("principal")
	keyAction     = ast.StringTerm("action")
	keyResource   = ast.StringTerm("resource")
)

func objectValue(m map[string]any) (ast.Value, error) {
	if len(m) == 0 {
		return emptyObject, nil
	}
	return ast.InterfaceToValue(m)
}

// goValue is input as JSON Logic sees it: plain JSON types.
func (in *Input) goValue() map[string]any {
	return map[string]any{
		"principal": map[string]any{
			"identity_id": in.Principal.IdentityID,
			"tenant_id":   in.Principal.TenantID,
			"kind":        in.Principal.Kind,
			"roles":       anySlice(in.Principal.Roles),
			"scopes":      anySlice(in.Principal.Scopes),
			"claims":      orEmpty(in.Principal.Claims),
			"acts_for":    anySlice(in.Principal.ActsFor),
		},
		"action": in.Action,
		"resource": map[string]any{
			"type":       in.Resource.Type,
			"id":         in.Resource.ID,
			"owner_id":   in.Resource.OwnerID,
			"tenant_id":  in.Resource.TenantID,
			"attributes": orEmpty(in.Resource.Attributes),
		},
	}
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
