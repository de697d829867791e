package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/pagination"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	policyv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
	"github.com/manushya-ai/manushya/pkg/policyengine"
	"github.com/manushya-ai/manushya/services/policy/store"
	"github.com/manushya-ai/manushya/services/policy/store/sqlc"
)

// eventSource names this service in the events it emits.
const eventSource = "manushya/policy"

// Service is the policy service's domain logic; the gRPC handlers are thin wrappers.
type Service struct {
	store *store.Store
	authz authz.Authorizer // checks policy.update on bulk update items
	opts  policyengine.Options
	log   *slog.Logger
}

// tenantOf returns the caller and its tenant; handlers never take a tenant from the
// request.
func tenantOf(ctx context.Context) (uuid.UUID, *auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.TenantID == "" {
		return uuid.Nil, nil, apierr.PermissionDenied("this method needs a caller in a tenant")
	}
	id, err := uuid.Parse(p.TenantID)
	if err != nil {
		return uuid.Nil, nil, apierr.PermissionDenied("this method needs a caller in a tenant")
	}
	return id, p, nil
}

func parseID(field, raw string) (uuid.UUID, error) {
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, apierr.Field(field, "must be a UUID")
	}
	return id, nil
}

func actorOf(p *auth.Principal) *uuid.UUID {
	if id, err := uuid.Parse(p.IdentityID); err == nil {
		return &id
	}
	return nil
}

// mapStoreErr turns store sentinels into API errors.
func mapStoreErr(err error, id string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return apierr.NotFound("policy", id)
	case errors.Is(err, store.ErrAlreadyExists):
		return apierr.AlreadyExists("a policy with this name already exists in the tenant")
	}
	return err
}

// validate compiles a policy as it would be saved; field prefixes the violations
// ("" for create, "policy." for update, "items[3].create." for bulk).
func (s *Service) validate(p policyengine.Policy, field string) error {
	if p.Name == "" {
		return apierr.Field(field+"name", "is required")
	}
	if p.Language == "" {
		return apierr.Field(field+"language", "must be POLICY_LANGUAGE_REGO or POLICY_LANGUAGE_JSON_LOGIC")
	}
	if p.Effect == "" {
		return apierr.Field(field+"effect", "must be EFFECT_ALLOW or EFFECT_DENY")
	}
	if p.Resource == "" {
		return apierr.Field(field+"resource", "is required")
	}
	if len(p.Actions) == 0 {
		return apierr.Field(field+"actions", "needs at least one action, or \"*\"")
	}
	if err := policyengine.Validate(p, s.opts); err != nil {
		var se *policyengine.SourceError
		if errors.As(err, &se) {
			return apierr.Field(field+"source", "%s", se.Description)
		}
		return apierr.Field(field+"source", "%s", err.Error())
	}
	return nil
}

func fromCreate(req *policyv1.CreatePolicyRequest) policyengine.Policy {
	enabled := true
	if req.Enabled != nil {
		enabled = req.GetEnabled()
	}
	return policyengine.Policy{
		Name: req.GetName(), Description: req.GetDescription(), Language: languages[req.GetLanguage()],
		Source: req.GetSource(), Resource: req.GetResource(), Actions: req.GetActions(), Effect: effects[req.GetEffect()],
		Priority: req.GetPriority(), Enabled: enabled, Roles: nonNil(req.GetRoles()),
	}
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

func (s *Service) createPolicy(ctx context.Context, req *policyv1.CreatePolicyRequest) (*policyv1.Policy, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	d := fromCreate(req)
	if err := s.validate(d, ""); err != nil {
		return nil, err
	}
	if req.GetValidateOnly() {
		return draftToProto(d, tenant), nil
	}
	var out *policyv1.Policy
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		var err error
		out, err = s.create(ctx, tx, tenant, p, d, req.GetIdempotencyKey())
		return err
	})
	if err != nil {
		return nil, mapStoreErr(err, "")
	}
	return out, nil
}

func draftToProto(d policyengine.Policy, tenant uuid.UUID) *policyv1.Policy {
	lang := policyv1.PolicyLanguage_POLICY_LANGUAGE_UNSPECIFIED
	for k, v := range languages {
		if v == d.Language {
			lang = k
		}
	}
	return &policyv1.Policy{
		TenantId: tenant.String(), Name: d.Name, Description: d.Description, Language: lang, Source: d.Source,
		Resource: d.Resource, Actions: d.Actions, Effect: effectToProto(string(d.Effect)), Priority: d.Priority,
		Enabled: d.Enabled, Roles: d.Roles, Version: d.Version, Builtin: d.Builtin,
	}
}

func (s *Service) create(ctx context.Context, tx *store.Tx, tenant uuid.UUID, p *auth.Principal, d policyengine.Policy, idemKey string) (*policyv1.Policy, error) {
	var key *string
	if idemKey != "" {
		key = &idemKey
		if row, err := tx.GetPolicyByIdempotencyKey(ctx, key); err == nil {
			return policyToProto(row), nil
		} else if !errors.Is(store.MapErr(err), store.ErrNotFound) {
			return nil, err
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	row, err := tx.InsertPolicy(ctx, sqlc.InsertPolicyParams{
		ID: id, TenantID: tenant, Name: d.Name, Description: d.Description, Language: string(d.Language),
		Source: d.Source, Resource: d.Resource, Actions: d.Actions, Effect: string(d.Effect), Priority: d.Priority,
		Enabled: d.Enabled, Roles: nonNil(d.Roles), IdempotencyKey: key,
	})
	if err != nil {
		return nil, store.MapErr(err)
	}
	if err := s.writeVersion(ctx, tx, row, nil, p); err != nil {
		return nil, err
	}
	if err := s.emit(ctx, tx, "policy.created", row); err != nil {
		return nil, err
	}
	return policyToProto(row), nil
}

func (s *Service) writeVersion(ctx context.Context, tx *store.Tx, row sqlc.PolicyPolicy, changed []string, p *auth.Principal) error {
	return tx.InsertPolicyVersion(ctx, sqlc.InsertPolicyVersionParams{
		PolicyID: row.ID, TenantID: row.TenantID, Version: row.Version, Name: row.Name, Description: row.Description,
		Language: row.Language, Source: row.Source, Resource: row.Resource, Actions: row.Actions, Effect: row.Effect,
		Priority: row.Priority, Enabled: row.Enabled, Roles: row.Roles, Builtin: row.Builtin,
		ChangedFields: nonNil(changed), ActorID: actorOf(p), PolicyCreateTime: row.CreateTime,
	})
}

// policyEvent is the data of policy.* events: enough to tell what changed, not the
// source (consumers that need it read the policy).
type policyEvent struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Version  int32  `json:"version"`
	Resource string `json:"resource"`
	Enabled  bool   `json:"enabled"`
}

func (s *Service) emit(ctx context.Context, tx *store.Tx, eventType string, row sqlc.PolicyPolicy) error {
	ev, err := bus.NewEvent(row.TenantID.String(), eventType, eventSource, row.ID.String(), policyEvent{
		ID: row.ID.String(), Name: row.Name, Version: row.Version, Resource: row.Resource, Enabled: row.Enabled,
	})
	if err != nil {
		return err
	}
	return tx.Emit(ctx, ev)
}

func (s *Service) getPolicy(ctx context.Context, rawID string) (*policyv1.Policy, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", rawID)
	if err != nil {
		return nil, err
	}
	var row sqlc.PolicyPolicy
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = tx.GetPolicy(ctx, id)
		return err
	})
	if err != nil {
		return nil, mapStoreErr(err, rawID)
	}
	return policyToProto(row), nil
}

func (s *Service) listPolicies(ctx context.Context, req *policyv1.ListPoliciesRequest) (*policyv1.ListPoliciesResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	params := sqlc.ListPoliciesParams{MaxRows: pagination.Size(req.GetPageSize()) + 1}
	if r := req.GetResource(); r != "" {
		params.Resource = &r
	}
	if l := req.GetLanguage(); l != policyv1.PolicyLanguage_POLICY_LANGUAGE_UNSPECIFIED {
		lang := string(languages[l])
		params.Language = &lang
	}
	if req.Enabled != nil {
		e := req.GetEnabled()
		params.Enabled = &e
	}
	fp := pagination.Fingerprint("policies", req.GetResource(), req.GetLanguage(), req.Enabled)
	cursor, err := pagination.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	if cursor != "" {
		prio, name, ok := strings.Cut(cursor, ":")
		n, convErr := strconv.Atoi(prio)
		if !ok || convErr != nil {
			return nil, apierr.Field("page_token", "page_token is not a token this server issued")
		}
		p32 := int32(n)
		params.AfterPriority, params.AfterName = &p32, &name
	}
	var rows []sqlc.PolicyPolicy
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListPolicies(ctx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := &policyv1.ListPoliciesResponse{}
	size := int(params.MaxRows - 1)
	if len(rows) > size {
		rows = rows[:size]
		last := rows[len(rows)-1]
		out.NextPageToken = pagination.Encode(fmt.Sprintf("%d:%s", last.Priority, last.Name), fp)
	}
	for _, r := range rows {
		out.Policies = append(out.Policies, policyToProto(r))
	}
	return out, nil
}

var updatableFields = []string{"name", "description", "language", "source", "resource", "actions", "effect", "priority", "enabled", "roles"}

// builtinFields are what a tenant may change on a built-in policy.
var builtinFields = []string{"priority", "enabled"}

// maskFields resolves the update mask: empty means every field set in the policy.
func maskFields(mask *fieldmaskpb.FieldMask, pol *policyv1.Policy, field string) ([]string, error) {
	if len(mask.GetPaths()) == 0 {
		var out []string
		set := map[string]bool{
			"name": pol.GetName() != "", "description": pol.GetDescription() != "",
			"language": pol.GetLanguage() != 0, "source": pol.GetSource() != "", "resource": pol.GetResource() != "",
			"actions": len(pol.GetActions()) > 0, "effect": pol.GetEffect() != 0, "priority": pol.GetPriority() != 0,
			"enabled": pol.GetEnabled(), "roles": len(pol.GetRoles()) > 0,
		}
		for _, f := range updatableFields {
			if set[f] {
				out = append(out, f)
			}
		}
		return out, nil
	}
	var out []string
	for _, f := range mask.GetPaths() {
		if !slices.Contains(updatableFields, f) {
			return nil, apierr.Field(field+"update_mask", "%q cannot be updated; updatable fields are %s", f, strings.Join(updatableFields, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

func (s *Service) updatePolicy(ctx context.Context, req *policyv1.UpdatePolicyRequest) (*policyv1.Policy, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var out *policyv1.Policy
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		out, err = s.update(ctx, tx, p, req, "")
		return err
	})
	if err != nil {
		return nil, mapStoreErr(err, req.GetPolicy().GetId())
	}
	return out, nil
}

func (s *Service) update(ctx context.Context, tx *store.Tx, p *auth.Principal, req *policyv1.UpdatePolicyRequest, field string) (*policyv1.Policy, error) {
	pol := req.GetPolicy()
	id, err := parseID(field+"policy.id", pol.GetId())
	if err != nil {
		return nil, err
	}
	fields, err := maskFields(req.GetUpdateMask(), pol, field)
	if err != nil {
		return nil, err
	}
	row, err := tx.GetPolicyForUpdate(ctx, id)
	if err != nil {
		return nil, store.MapErr(err)
	}
	if v := req.GetExpectedVersion(); v != 0 && v != row.Version {
		return nil, apierr.New(codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
			"policy %s is at version %d, not %d", row.ID, row.Version, v)
	}
	if row.Builtin {
		for _, f := range fields {
			if !slices.Contains(builtinFields, f) {
				return nil, apierr.FailedPrecondition("%s is a built-in policy: only %s can change (field %q)",
					row.Name, strings.Join(builtinFields, " and "), f)
			}
		}
	}
	d := store.ToEngine(row)
	d.Description = row.Description
	var changed []string
	for _, f := range fields {
		before := fmt.Sprint(fieldValue(d, f))
		switch f {
		case "name":
			d.Name = pol.GetName()
		case "description":
			d.Description = pol.GetDescription()
		case "language":
			d.Language = languages[pol.GetLanguage()]
		case "source":
			d.Source = pol.GetSource()
		case "resource":
			d.Resource = pol.GetResource()
		case "actions":
			d.Actions = nonNil(pol.GetActions())
		case "effect":
			d.Effect = effects[pol.GetEffect()]
		case "priority":
			d.Priority = pol.GetPriority()
		case "enabled":
			d.Enabled = pol.GetEnabled()
		case "roles":
			d.Roles = nonNil(pol.GetRoles())
		}
		if fmt.Sprint(fieldValue(d, f)) != before {
			changed = append(changed, f)
		}
	}
	if err := s.validate(d, field+"policy."); err != nil {
		return nil, err
	}
	if req.GetValidateOnly() || len(changed) == 0 {
		out := policyToProto(row)
		if req.GetValidateOnly() {
			out = draftToProto(d, row.TenantID)
			out.Id, out.Version, out.CreateTime, out.UpdateTime = row.ID.String(), row.Version+1, policyToProto(row).GetCreateTime(), policyToProto(row).GetUpdateTime()
		}
		return out, nil
	}
	row, err = tx.UpdatePolicy(ctx, sqlc.UpdatePolicyParams{
		ID: id, Name: d.Name, Description: d.Description, Language: string(d.Language), Source: d.Source,
		Resource: d.Resource, Actions: d.Actions, Effect: string(d.Effect), Priority: d.Priority, Enabled: d.Enabled,
		Roles: nonNil(d.Roles),
	})
	if err != nil {
		return nil, store.MapErr(err)
	}
	if err := s.writeVersion(ctx, tx, row, changed, p); err != nil {
		return nil, err
	}
	if err := s.emit(ctx, tx, "policy.updated", row); err != nil {
		return nil, err
	}
	return policyToProto(row), nil
}

func fieldValue(d policyengine.Policy, f string) any {
	switch f {
	case "name":
		return d.Name
	case "description":
		return d.Description
	case "language":
		return d.Language
	case "source":
		return d.Source
	case "resource":
		return d.Resource
	case "actions":
		return d.Actions
	case "effect":
		return d.Effect
	case "priority":
		return d.Priority
	case "enabled":
		return d.Enabled
	case "roles":
		return d.Roles
	}
	return nil
}

func (s *Service) deletePolicy(ctx context.Context, rawID string) error {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	id, err := parseID("id", rawID)
	if err != nil {
		return err
	}
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err := tx.GetPolicyForUpdate(ctx, id)
		if err != nil {
			return err
		}
		if row.Builtin {
			return apierr.FailedPrecondition("%s is a built-in policy: disable it instead of deleting it", row.Name)
		}
		if _, err := tx.DeletePolicy(ctx, id); err != nil {
			return err
		}
		return s.emit(ctx, tx, "policy.deleted", row)
	})
	return mapStoreErr(err, rawID)
}

// errAborted marks the items of an all-or-nothing bulk call that were fine but
// rolled back with the rest.
var errAborted = apierr.New(codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
	"not saved: another item of this all-or-nothing request failed")

func (s *Service) bulkUpsert(ctx context.Context, req *policyv1.BulkUpsertPoliciesRequest) (*policyv1.BulkUpsertPoliciesResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	results := make([]error, len(req.GetItems()))
	saved := make([]*policyv1.Policy, len(req.GetItems()))
	failed := errors.New("an item failed")
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		anyFailed := false
		for i, item := range req.GetItems() {
			field := fmt.Sprintf("items[%d].", i)
			results[i] = tx.Savepoint(ctx, func(tx *store.Tx) error {
				var err error
				switch op := item.GetOperation().(type) {
				case *policyv1.PolicyWrite_Create:
					d := fromCreate(op.Create)
					if err := s.validate(d, field+"create."); err != nil {
						return err
					}
					saved[i], err = s.create(ctx, tx, tenant, p, d, op.Create.GetIdempotencyKey())
				case *policyv1.PolicyWrite_Update:
					// Creating is what the method's declared permission covers; each
					// update also needs policy.update.
					if s.authz != nil {
						if err := s.authz.Authorize(ctx, p, authz.Access{Permission: "policy.update", Resource: "policy", Action: "update"}); err != nil {
							return err
						}
					}
					saved[i], err = s.update(ctx, tx, p, op.Update, field+"update.")
				default:
					err = apierr.Field(field+"operation", "needs create or update")
				}
				return err
			})
			if results[i] != nil {
				anyFailed = true
				saved[i] = nil
			}
		}
		if anyFailed && req.GetAllOrNothing() {
			return failed
		}
		return nil
	})
	if err != nil && !errors.Is(err, failed) {
		return nil, err
	}
	rolledBack := errors.Is(err, failed)
	out := &policyv1.BulkUpsertPoliciesResponse{}
	for i := range results {
		itemErr := results[i]
		if rolledBack && itemErr == nil {
			itemErr = errAborted
		}
		res := &policyv1.BulkUpsertPolicyResult{}
		if itemErr != nil {
			st, internal := apierr.ToStatus(mapStoreErr(itemErr, ""))
			if internal {
				s.log.ErrorContext(ctx, "bulk policy item failed", "item", i, "err", itemErr)
			}
			res.Status = st.Proto()
		} else {
			res.Status = okStatus()
			if !rolledBack {
				res.Policy = saved[i]
			}
		}
		out.Results = append(out.Results, res)
	}
	return out, nil
}

func (s *Service) testPolicy(ctx context.Context, req *policyv1.TestPolicyRequest) (*policyv1.TestPolicyResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if t := req.GetInput().GetPrincipal().GetTenantId(); t != "" && t != tenant.String() {
		return nil, apierr.PermissionDenied("policies of another tenant cannot be tested")
	}
	in := inputFromProto(req.GetInput(), tenant.String())
	var policies []policyengine.Policy
	single := true
	switch t := req.GetTarget().(type) {
	case *policyv1.TestPolicyRequest_PolicyId:
		id, err := parseID("policy_id", t.PolicyId)
		if err != nil {
			return nil, err
		}
		var row sqlc.PolicyPolicy
		err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			row, err = tx.GetPolicy(ctx, id)
			return err
		})
		if err != nil {
			return nil, mapStoreErr(err, t.PolicyId)
		}
		p := store.ToEngine(row)
		p.Enabled = true // testing a disabled policy shows what enabling it would do
		policies = []policyengine.Policy{p}
	case *policyv1.TestPolicyRequest_Policy:
		d := policyengine.Policy{
			Name: t.Policy.GetName(), Language: languages[t.Policy.GetLanguage()], Source: t.Policy.GetSource(),
			Resource: t.Policy.GetResource(), Actions: t.Policy.GetActions(), Effect: effects[t.Policy.GetEffect()],
			Priority: t.Policy.GetPriority(), Enabled: true, Roles: t.Policy.GetRoles(),
		}
		if d.Name == "" {
			d.Name = "draft"
		}
		if err := s.validate(d, "policy."); err != nil {
			return nil, err
		}
		policies = []policyengine.Policy{d}
	case *policyv1.TestPolicyRequest_AllPolicies:
		single = false
		if policies, err = s.store.LoadPolicies(ctx, tenant.String()); err != nil {
			return nil, err
		}
	default:
		return nil, apierr.Field("target", "needs policy_id, policy or all_policies")
	}
	opts := s.opts
	opts.CacheSize = -1
	set, err := policyengine.Compile(ctx, tenant.String(), policies, opts)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	d := set.Decide(ctx, in, true)
	d.Duration = time.Since(start)
	out := decisionToProto(d)
	if single && len(out.GetEvaluations()) == 0 {
		// Out of scope: say why, as the single policy is always listed.
		p := policies[0]
		_, why := policyengine.Covers(p, in)
		out.Evaluations = []*policyv1.PolicyEvaluation{{
			PolicyId: p.ID, PolicyName: p.Name, PolicyVersion: p.Version, Effect: effectToProto(string(p.Effect)),
			Priority: p.Priority, Reason: why,
		}}
	}
	return out, nil
}

func (s *Service) listVersions(ctx context.Context, req *policyv1.ListPolicyVersionsRequest) (*policyv1.ListPolicyVersionsResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	fp := pagination.Fingerprint("versions", req.GetId())
	cursor, err := pagination.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	params := sqlc.ListPolicyVersionsParams{PolicyID: id, MaxRows: pagination.Size(req.GetPageSize()) + 1}
	if cursor != "" {
		n, err := strconv.Atoi(cursor)
		if err != nil {
			return nil, apierr.Field("page_token", "page_token is not a token this server issued")
		}
		v := int32(n)
		params.BeforeVersion = &v
	}
	var rows []sqlc.PolicyPolicyVersion
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListPolicyVersions(ctx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 && cursor == "" {
		return nil, apierr.NotFound("policy", req.GetId())
	}
	out := &policyv1.ListPolicyVersionsResponse{}
	size := int(params.MaxRows - 1)
	if len(rows) > size {
		rows = rows[:size]
		out.NextPageToken = pagination.Encode(strconv.Itoa(int(rows[len(rows)-1].Version)), fp)
	}
	for _, r := range rows {
		out.Versions = append(out.Versions, versionToProto(r))
	}
	return out, nil
}
