package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/pagination"
	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	"github.com/manushya-ai/manushya/pkg/ratelimit"
	"github.com/manushya-ai/manushya/services/usage/store"
	"github.com/manushya-ai/manushya/services/usage/store/sqlc"
)

// LimitSource serves the stored rate limits to a ratelimit.Limiter. Every process
// that limits requests builds one on its own pool: it reads in the tenant's
// transaction, so row-level security decides what it sees (the tenant's own limits
// and the global defaults).
type LimitSource struct {
	store *store.Store
}

// NewLimitSource returns a source on pool (connected as the application role).
func NewLimitSource(pool *pgxpool.Pool) *LimitSource { return &LimitSource{store: store.New(pool)} }

// Limits implements ratelimit.LimitSource.
func (s *LimitSource) Limits(ctx context.Context, tenant string) ([]ratelimit.Limit, error) {
	var rows []sqlc.UsageRateLimit
	load := func(tx *store.Tx) (err error) {
		rows, err = tx.LimitsForTenant(ctx)
		return err
	}
	var err error
	if tenant == "" {
		err = s.store.InGlobal(ctx, load)
	} else {
		id, perr := uuid.Parse(tenant)
		if perr != nil {
			return nil, fmt.Errorf("tenant %q: %w", tenant, perr)
		}
		err = s.store.InTenant(ctx, id, load)
	}
	if err != nil {
		return nil, fmt.Errorf("load rate limits: %w", err)
	}
	out := make([]ratelimit.Limit, 0, len(rows))
	for _, r := range rows {
		out = append(out, limitFromRow(r))
	}
	return out, nil
}

func limitFromRow(r sqlc.UsageRateLimit) ratelimit.Limit {
	sc, _ := ratelimit.ParseScope(r.Scope)
	l := ratelimit.Limit{
		ID: r.ID.String(), Scope: sc, Subject: r.Subject, RouteGroup: r.RouteGroup,
		Rate: r.Rate, Period: time.Duration(r.PeriodMs) * time.Millisecond, Burst: r.Burst, Cost: r.Cost, Shadow: r.Shadow,
	}
	if r.TenantID != nil {
		l.TenantID = r.TenantID.String()
	}
	return l
}

func rowToProto(r sqlc.UsageRateLimit) *adminv1.RateLimit {
	sc, _ := ratelimit.ParseScope(r.Scope)
	out := &adminv1.RateLimit{
		Id: r.ID.String(), Scope: adminv1.RateLimitScope(sc), Subject: r.Subject, RouteGroup: r.RouteGroup,
		Rate: r.Rate, Period: durationpb.New(time.Duration(r.PeriodMs) * time.Millisecond), Burst: r.Burst, Cost: r.Cost,
		Shadow: r.Shadow, Description: r.Description,
		CreateTime: timestamppb.New(r.CreateTime), UpdateTime: timestamppb.New(r.UpdateTime),
	}
	if r.TenantID != nil {
		out.TenantId = r.TenantID.String()
	}
	return out
}

// rateLimitServer implements RateLimitService.
type rateLimitServer struct {
	adminv1.UnimplementedRateLimitServiceServer
	svc *Service
}

// limitTx runs fn where limits of tenant live: the tenant's transaction, or the
// tenantless one for global defaults (tenant uuid.Nil), which only the operator may
// change.
func (s *Service) limitTx(ctx context.Context, p *auth.Principal, tenant uuid.UUID, write bool, fn func(*store.Tx) error) error {
	if tenant == uuid.Nil {
		if write && !p.IsOperator() {
			return apierr.PermissionDenied("only the platform operator changes global rate limits")
		}
		return s.store.InGlobal(ctx, fn)
	}
	if tenant.String() != p.TenantID && !p.IsOperator() {
		return apierr.PermissionDenied("rate limits of another tenant need the platform operator")
	}
	return s.store.InTenant(ctx, tenant, fn)
}

// emitLimitChange tells every process's limiter to reload the limits of tenant
// (uuid.Nil: the globals, so every tenant).
func emitLimitChange(ctx context.Context, tx *store.Tx, p *auth.Principal, tenant uuid.UUID, id, op string) error {
	data := map[string]string{"id": id, "op": op, "tenant_id": ""}
	envelope := p.TenantID
	if tenant != uuid.Nil {
		data["tenant_id"] = tenant.String()
		envelope = tenant.String()
	}
	raw, _ := json.Marshal(data)
	ev, err := bus.NewEvent(envelope, ratelimit.EventUpdated, EventSource, id, json.RawMessage(raw))
	if err != nil {
		return apierr.Internal(err)
	}
	return tx.Emit(ctx, ev)
}

func limitTenant(field, raw string) (uuid.UUID, error) {
	if raw == "" {
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, apierr.Field(field, "must be a UUID")
	}
	return id, nil
}

func validateLimit(l *adminv1.RateLimit) error {
	var vs []apierr.Violation
	if l.GetScope() == adminv1.RateLimitScope_RATE_LIMIT_SCOPE_UNSPECIFIED {
		vs = append(vs, apierr.Violation{Field: "limit.scope", Description: "is required"})
	}
	if l.GetRate() < 1 {
		vs = append(vs, apierr.Violation{Field: "limit.rate", Description: "must be at least 1"})
	}
	if d := l.GetPeriod().AsDuration(); l.GetPeriod() == nil || d < time.Second || d > 24*time.Hour {
		vs = append(vs, apierr.Violation{Field: "limit.period", Description: "must be 1s to 24h"})
	}
	if l.GetScope() == adminv1.RateLimitScope_RATE_LIMIT_SCOPE_TENANT && l.GetSubject() != "" {
		vs = append(vs, apierr.Violation{Field: "limit.subject", Description: "must be empty for the tenant scope"})
	}
	if len(vs) > 0 {
		return apierr.InvalidArgument(vs...)
	}
	return nil
}

func (s *rateLimitServer) CreateRateLimit(ctx context.Context, req *adminv1.CreateRateLimitRequest) (*adminv1.CreateRateLimitResponse, error) {
	p, _ := auth.FromContext(ctx)
	l := req.GetLimit()
	tenant, err := limitTenant("limit.tenant_id", l.GetTenantId())
	if err != nil {
		return nil, err
	}
	if err := validateLimit(l); err != nil {
		return nil, err
	}
	row, err := s.svc.createLimit(ctx, p, tenant, uuid.Must(uuid.NewV7()), l)
	if err != nil {
		return nil, err
	}
	return &adminv1.CreateRateLimitResponse{Limit: rowToProto(row)}, nil
}

func (s *Service) createLimit(ctx context.Context, p *auth.Principal, tenant, id uuid.UUID, l *adminv1.RateLimit) (sqlc.UsageRateLimit, error) {
	var row sqlc.UsageRateLimit
	err := s.limitTx(ctx, p, tenant, true, func(tx *store.Tx) error {
		params := sqlc.CreateRateLimitParams{
			ID: id, Scope: ratelimit.Scope(l.GetScope()).String(), Subject: l.GetSubject(), RouteGroup: l.GetRouteGroup(),
			Rate: l.GetRate(), PeriodMs: l.GetPeriod().AsDuration().Milliseconds(), Burst: l.GetBurst(), Cost: l.GetCost(),
			Shadow: l.GetShadow(), Description: l.GetDescription(),
		}
		if tenant != uuid.Nil {
			params.TenantID = &tenant
		}
		var err error
		if row, err = tx.CreateRateLimit(ctx, params); err != nil {
			return err
		}
		return emitLimitChange(ctx, tx, p, tenant, id.String(), "created")
	})
	if errors.Is(err, store.ErrAlreadyExists) {
		return row, apierr.AlreadyExists("a rate limit for this tenant, scope, subject and route group exists")
	}
	return row, err
}

// findLimit loads a limit visible to the caller: the caller's tenant's or a global.
func (s *Service) findLimit(ctx context.Context, p *auth.Principal, rawID string) (sqlc.UsageRateLimit, error) {
	id, err := uuid.Parse(rawID)
	if err != nil {
		return sqlc.UsageRateLimit{}, apierr.Field("id", "must be a UUID")
	}
	tenant, err := uuid.Parse(p.TenantID)
	if err != nil {
		return sqlc.UsageRateLimit{}, apierr.Internal(err)
	}
	var row sqlc.UsageRateLimit
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = tx.GetRateLimit(ctx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return row, apierr.NotFound("rate limit", rawID)
	}
	return row, err
}

func (s *rateLimitServer) GetRateLimit(ctx context.Context, req *adminv1.GetRateLimitRequest) (*adminv1.GetRateLimitResponse, error) {
	p, _ := auth.FromContext(ctx)
	row, err := s.svc.findLimit(ctx, p, req.GetId())
	if err != nil {
		return nil, err
	}
	return &adminv1.GetRateLimitResponse{Limit: rowToProto(row)}, nil
}

func (s *rateLimitServer) ListRateLimits(ctx context.Context, req *adminv1.ListRateLimitsRequest) (*adminv1.ListRateLimitsResponse, error) {
	p, _ := auth.FromContext(ctx)
	tenant, err := uuid.Parse(p.TenantID)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	if req.GetTenantId() != "" {
		if tenant, err = limitTenant("tenant_id", req.GetTenantId()); err != nil {
			return nil, err
		}
	}
	params := sqlc.ListRateLimitsParams{
		TenantID: &tenant, IncludeGlobals: req.GetIncludeDefaults(), PageLimit: pagination.Size(req.GetPageSize()) + 1,
		Subject: optional(req.GetSubject()), RouteGroup: optional(req.GetRouteGroup()),
	}
	if req.GetScope() != adminv1.RateLimitScope_RATE_LIMIT_SCOPE_UNSPECIFIED {
		params.Scope = optional(ratelimit.Scope(req.GetScope()).String())
	}
	fp := pagination.Fingerprint("rate-limits", tenant, params.IncludeGlobals, params.Scope, params.Subject, params.RouteGroup)
	cursor, err := pagination.DecodeUUID(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	params.AfterID = cursor
	var rows []sqlc.UsageRateLimit
	err = s.svc.limitTx(ctx, p, tenant, false, func(tx *store.Tx) error {
		rows, err = tx.ListRateLimits(ctx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListRateLimitsResponse{}
	if len(rows) == int(params.PageLimit) {
		rows = rows[:len(rows)-1]
		resp.NextPageToken = pagination.Encode(rows[len(rows)-1].ID.String(), fp)
	}
	for _, r := range rows {
		resp.Limits = append(resp.Limits, rowToProto(r))
	}
	return resp, nil
}

var updatable = []string{"scope", "subject", "route_group", "rate", "period", "burst", "cost", "shadow", "description"}

func (s *rateLimitServer) UpdateRateLimit(ctx context.Context, req *adminv1.UpdateRateLimitRequest) (*adminv1.UpdateRateLimitResponse, error) {
	p, _ := auth.FromContext(ctx)
	in := req.GetLimit()
	cur, err := s.svc.findLimit(ctx, p, in.GetId())
	if apierr.ReasonOf(err) == errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND && req.GetAllowMissing() {
		tenant, terr := limitTenant("limit.tenant_id", in.GetTenantId())
		if terr != nil {
			return nil, terr
		}
		if err := validateLimit(in); err != nil {
			return nil, err
		}
		id, perr := uuid.Parse(in.GetId())
		if perr != nil {
			return nil, apierr.Field("limit.id", "must be a UUID")
		}
		row, err := s.svc.createLimit(ctx, p, tenant, id, in)
		if err != nil {
			return nil, err
		}
		return &adminv1.UpdateRateLimitResponse{Limit: rowToProto(row)}, nil
	}
	if err != nil {
		return nil, err
	}
	merged := rowToProto(cur)
	paths := req.GetUpdateMask().GetPaths()
	for _, path := range paths {
		if !slices.Contains(updatable, path) {
			return nil, apierr.Field("update_mask", "%q cannot be updated; updatable fields: %v", path, updatable)
		}
	}
	set := func(name string, nonZero bool) bool {
		if len(paths) == 0 {
			return nonZero
		}
		return slices.Contains(paths, name)
	}
	if set("scope", in.GetScope() != 0) {
		merged.Scope = in.GetScope()
	}
	if set("subject", in.GetSubject() != "") {
		merged.Subject = in.GetSubject()
	}
	if set("route_group", in.GetRouteGroup() != "") {
		merged.RouteGroup = in.GetRouteGroup()
	}
	if set("rate", in.GetRate() != 0) {
		merged.Rate = in.GetRate()
	}
	if set("period", in.GetPeriod() != nil) {
		merged.Period = in.GetPeriod()
	}
	if set("burst", in.GetBurst() != 0) {
		merged.Burst = in.GetBurst()
	}
	if set("cost", in.GetCost() != 0) {
		merged.Cost = in.GetCost()
	}
	if set("shadow", in.GetShadow()) {
		merged.Shadow = in.GetShadow()
	}
	if set("description", in.GetDescription() != "") {
		merged.Description = in.GetDescription()
	}
	if err := validateLimit(merged); err != nil {
		return nil, err
	}
	tenant := uuid.Nil
	if cur.TenantID != nil {
		tenant = *cur.TenantID
	}
	var row sqlc.UsageRateLimit
	err = s.svc.limitTx(ctx, p, tenant, true, func(tx *store.Tx) error {
		row, err = tx.UpdateRateLimit(ctx, sqlc.UpdateRateLimitParams{
			ID: cur.ID, Scope: ratelimit.Scope(merged.GetScope()).String(), Subject: merged.GetSubject(),
			RouteGroup: merged.GetRouteGroup(), Rate: merged.GetRate(), PeriodMs: merged.GetPeriod().AsDuration().Milliseconds(),
			Burst: merged.GetBurst(), Cost: merged.GetCost(), Shadow: merged.GetShadow(), Description: merged.GetDescription(),
		})
		if err != nil {
			return err
		}
		return emitLimitChange(ctx, tx, p, tenant, cur.ID.String(), "updated")
	})
	switch {
	case errors.Is(err, store.ErrAlreadyExists):
		return nil, apierr.AlreadyExists("a rate limit for this tenant, scope, subject and route group exists")
	case errors.Is(err, store.ErrNotFound):
		return nil, apierr.NotFound("rate limit", in.GetId())
	case err != nil:
		return nil, err
	}
	return &adminv1.UpdateRateLimitResponse{Limit: rowToProto(row)}, nil
}

func (s *rateLimitServer) DeleteRateLimit(ctx context.Context, req *adminv1.DeleteRateLimitRequest) (*adminv1.DeleteRateLimitResponse, error) {
	p, _ := auth.FromContext(ctx)
	cur, err := s.svc.findLimit(ctx, p, req.GetId())
	if err != nil {
		return nil, err
	}
	tenant := uuid.Nil
	if cur.TenantID != nil {
		tenant = *cur.TenantID
	}
	err = s.svc.limitTx(ctx, p, tenant, true, func(tx *store.Tx) error {
		if _, err := tx.DeleteRateLimit(ctx, cur.ID); err != nil {
			return err
		}
		return emitLimitChange(ctx, tx, p, tenant, cur.ID.String(), "deleted")
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.NotFound("rate limit", req.GetId())
	}
	if err != nil {
		return nil, err
	}
	return &adminv1.DeleteRateLimitResponse{}, nil
}

// ownKey checks the caller may see the counter behind key.
func ownKey(p *auth.Principal, key string) error {
	tenant, ok := ratelimit.TenantOfKey(key)
	if !ok || (tenant != p.TenantID && !p.IsOperator()) {
		return apierr.NotFound("rate limit counter", key)
	}
	return nil
}

func (s *rateLimitServer) stateOf(ctx context.Context, key string) (*adminv1.RateLimitState, error) {
	st, err := s.svc.limiter.State(ctx, key)
	if errors.Is(err, ratelimit.ErrUnknownKey) {
		return nil, apierr.NotFound("rate limit counter", key)
	}
	if err != nil {
		return nil, err
	}
	return &adminv1.RateLimitState{
		Key: key, RateLimitId: st.Limit.ID, Limit: st.Limit.Rate, Remaining: st.Remaining,
		ResetAfter: durationpb.New(st.ResetAfter), RetryAfter: durationpb.New(st.RetryAfter), Shadow: st.Limit.Shadow,
	}, nil
}

func (s *rateLimitServer) GetRateLimitState(ctx context.Context, req *adminv1.GetRateLimitStateRequest) (*adminv1.GetRateLimitStateResponse, error) {
	p, _ := auth.FromContext(ctx)
	if err := ownKey(p, req.GetKey()); err != nil {
		return nil, err
	}
	st, err := s.stateOf(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &adminv1.GetRateLimitStateResponse{State: st}, nil
}

func (s *rateLimitServer) ResetRateLimit(ctx context.Context, req *adminv1.ResetRateLimitRequest) (*adminv1.ResetRateLimitResponse, error) {
	p, _ := auth.FromContext(ctx)
	if err := ownKey(p, req.GetKey()); err != nil {
		return nil, err
	}
	if err := s.svc.limiter.Reset(ctx, req.GetKey()); err != nil {
		if errors.Is(err, ratelimit.ErrUnknownKey) {
			return nil, apierr.NotFound("rate limit counter", req.GetKey())
		}
		return nil, err
	}
	st, err := s.stateOf(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &adminv1.ResetRateLimitResponse{State: st}, nil
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
