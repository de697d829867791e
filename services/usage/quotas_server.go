package usage

import (
	"context"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	"github.com/manushya-ai/manushya/services/usage/store"
	"github.com/manushya-ai/manushya/services/usage/store/sqlc"
)

var enforcementNames = map[usagev1.UsageQuotaEnforcement]string{
	usagev1.UsageQuotaEnforcement_USAGE_QUOTA_ENFORCEMENT_UNSPECIFIED: enforceReport,
	usagev1.UsageQuotaEnforcement_USAGE_QUOTA_ENFORCEMENT_REPORT_ONLY: enforceReport,
	usagev1.UsageQuotaEnforcement_USAGE_QUOTA_ENFORCEMENT_ENFORCE:     enforceRefuse,
}

// quotaTenant is the tenant a quota call is about: the caller's own, or another one
// for the operator.
func quotaTenant(ctx context.Context, raw string) (uuid.UUID, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil || raw == "" {
		return tenant, err
	}
	other, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, apierr.Field("tenant_id", "must be a UUID")
	}
	if other != tenant && !p.IsOperator() {
		return uuid.Nil, apierr.PermissionDenied("quotas of another tenant need the platform operator")
	}
	return other, nil
}

func (s *usageServer) quotasOf(ctx context.Context, tenant uuid.UUID) ([]*usagev1.UsageQuota, error) {
	st, err := s.svc.quotas.load(ctx, tenant)
	if err != nil {
		return nil, err
	}
	start, end := monthOf(s.svc.quotas.now())
	out := make([]*usagev1.UsageQuota, 0, len(st.quotas))
	for _, q := range st.quotas {
		e := usagev1.UsageQuotaEnforcement_USAGE_QUOTA_ENFORCEMENT_REPORT_ONLY
		if q.Enforcement == enforceRefuse {
			e = usagev1.UsageQuotaEnforcement_USAGE_QUOTA_ENFORCEMENT_ENFORCE
		}
		out = append(out, &usagev1.UsageQuota{
			Type: q.Type, MonthlyLimit: q.MonthlyLimit, Enforcement: e, Used: st.used[q.Type],
			PeriodStartTime: timestamppb.New(start), PeriodEndTime: timestamppb.New(end), UpdateTime: timestamppb.New(q.UpdateTime),
		})
	}
	return out, nil
}

func (s *usageServer) GetUsageQuotas(ctx context.Context, req *usagev1.GetUsageQuotasRequest) (*usagev1.GetUsageQuotasResponse, error) {
	tenant, err := quotaTenant(ctx, req.GetTenantId())
	if err != nil {
		return nil, err
	}
	qs, err := s.quotasOf(ctx, tenant)
	if err != nil {
		return nil, err
	}
	return &usagev1.GetUsageQuotasResponse{Quotas: qs}, nil
}

func (s *usageServer) UpdateUsageQuotas(ctx context.Context, req *usagev1.UpdateUsageQuotasRequest) (*usagev1.UpdateUsageQuotasResponse, error) {
	tenant, err := quotaTenant(ctx, req.GetTenantId())
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, q := range req.GetQuotas() {
		if seen[q.GetType()] {
			return nil, apierr.Field("quotas", "type %q is listed twice (index %d)", q.GetType(), i)
		}
		seen[q.GetType()] = true
		if q.GetMonthlyLimit() < 1 {
			return nil, apierr.Field("quotas", "quotas[%d].monthly_limit must be at least 1", i)
		}
	}
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		if err := tx.DeleteQuotas(ctx); err != nil {
			return err
		}
		for _, q := range req.GetQuotas() {
			if err := tx.PutQuota(ctx, sqlc.PutQuotaParams{
				TenantID: tenant, Type: q.GetType(), MonthlyLimit: q.GetMonthlyLimit(), Enforcement: enforcementNames[q.GetEnforcement()],
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	qs, err := s.quotasOf(ctx, tenant)
	if err != nil {
		return nil, err
	}
	return &usagev1.UpdateUsageQuotasResponse{Quotas: qs}, nil
}
