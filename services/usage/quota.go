package usage

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/bus"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	"github.com/manushya-ai/manushya/services/usage/store"
	"github.com/manushya-ai/manushya/services/usage/store/sqlc"
)

// Quota enforcement modes as stored.
const (
	enforceReport = "report_only"
	enforceRefuse = "enforce"
)

// Quota event types, delivered by webhooks like any other event.
const (
	EventQuotaWarning  = "usage.quota.warning"
	EventQuotaExceeded = "usage.quota.exceeded"
)

// QuotaChecker knows each tenant's monthly quotas and what is used of them. It
// emits usage.quota.warning at 80% and usage.quota.exceeded at 100%, once per
// tenant, type and month, and refuses actions beyond an enforced quota.
//
// Allow has the signature of grpcserver.RateLimiter, so the composition root can
// put it in the interceptor chain (ratelimit.Chain); services may also call Check
// before metering an action. A route's usage type is its permission
// ("memory.write", "memory.search"); only types with a quota are ever refused.
type QuotaChecker struct {
	store  *store.Store
	logger *slog.Logger
	now    func() time.Time
	ttl    time.Duration

	mu    sync.Mutex
	cache map[uuid.UUID]*quotaState
}

type quotaState struct {
	quotas  []sqlc.UsageQuota
	used    map[string]int64
	expires time.Time
}

// NewQuotaChecker returns a checker on s; usage of an enforced quota is re-read at
// most every ttl (and at once after this process ingests).
func NewQuotaChecker(pool *pgxpool.Pool, logger *slog.Logger, ttl time.Duration) *QuotaChecker {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &QuotaChecker{store: store.New(pool), logger: logger, now: time.Now, ttl: ttl, cache: map[uuid.UUID]*quotaState{}}
}

func monthOf(now time.Time) (time.Time, time.Time) {
	y, m, _ := now.UTC().Date()
	start := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 1, 0)
}

// load reads a tenant's quotas and month-to-date usage, records crossed levels and
// emits their events in the same transaction.
func (q *QuotaChecker) load(ctx context.Context, tenant uuid.UUID) (*quotaState, error) {
	st := &quotaState{used: map[string]int64{}, expires: q.now().Add(q.ttl)}
	start, end := monthOf(q.now())
	err := q.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		var err error
		if st.quotas, err = tx.GetQuotas(ctx); err != nil || len(st.quotas) == 0 {
			return err
		}
		rows, err := tx.MonthUsage(ctx, sqlc.MonthUsageParams{
			MonthStart: pgtype.Date{Time: start, Valid: true}, MonthEnd: pgtype.Date{Time: end, Valid: true},
		})
		if err != nil {
			return err
		}
		for _, r := range rows {
			st.used[r.Type] = r.Quantity
		}
		for _, qu := range st.quotas {
			used := st.used[qu.Type]
			for _, lv := range []struct {
				level, event string
				reached      bool
			}{
				{"warning", EventQuotaWarning, used*5 >= qu.MonthlyLimit*4},
				{"exceeded", EventQuotaExceeded, used >= qu.MonthlyLimit},
			} {
				if !lv.reached {
					continue
				}
				n, err := tx.RecordQuotaNotice(ctx, sqlc.RecordQuotaNoticeParams{
					TenantID: tenant, Type: qu.Type, Period: pgtype.Date{Time: start, Valid: true}, Level: lv.level,
				})
				if err != nil || n == 0 {
					if err != nil {
						return err
					}
					continue
				}
				// The shape the webhooks catalogue documents for quota events.
				data, _ := json.Marshal(map[string]any{
					"metric": qu.Type, "limit": qu.MonthlyLimit, "used": used, "enforcement": qu.Enforcement,
					"period_start": start, "period_end": end,
				})
				ev, err := bus.NewEvent(tenant.String(), lv.event, EventSource, qu.Type, json.RawMessage(data))
				if err != nil {
					return err
				}
				if err := tx.Emit(ctx, ev); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.cache[tenant] = st
	q.mu.Unlock()
	return st, nil
}

// Touch re-reads a tenant's quotas after its usage grew, emitting the events of
// levels crossed. Failures are logged: metering must not fail because of them.
func (q *QuotaChecker) Touch(ctx context.Context, tenant uuid.UUID) {
	q.mu.Lock()
	st := q.cache[tenant]
	q.mu.Unlock()
	if st != nil && len(st.quotas) == 0 && q.now().Before(st.expires) {
		return // no quotas, recently checked
	}
	if _, err := q.load(ctx, tenant); err != nil {
		q.logger.WarnContext(ctx, "quota check failed", "tenant", tenant, "err", err)
	}
}

func (q *QuotaChecker) state(ctx context.Context, tenant uuid.UUID) (*quotaState, error) {
	q.mu.Lock()
	st := q.cache[tenant]
	q.mu.Unlock()
	if st != nil && q.now().Before(st.expires) {
		return st, nil
	}
	return q.load(ctx, tenant)
}

// Check refuses with RESOURCE_EXHAUSTED (QUOTA_EXCEEDED) when tenant's enforced
// quota of usageType is used up for the month. A failure to read quotas lets the
// action through (logged): quotas are billing, not safety.
func (q *QuotaChecker) Check(ctx context.Context, tenant uuid.UUID, usageType string) error {
	st, err := q.state(ctx, tenant)
	if err != nil {
		q.logger.WarnContext(ctx, "quota state unavailable; allowing", "tenant", tenant, "err", err)
		return nil
	}
	for _, qu := range st.quotas {
		if qu.Type != usageType || qu.Enforcement != enforceRefuse {
			continue
		}
		if used := st.used[usageType]; used >= qu.MonthlyLimit {
			_, end := monthOf(q.now())
			e := apierr.New(codesResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_QUOTA_EXCEEDED,
				"the monthly quota of %s (%d) is used up until %s", usageType, qu.MonthlyLimit, end.Format(time.DateOnly))
			e.Metadata = map[string]string{"type": usageType, "monthly_limit": itoa(qu.MonthlyLimit), "used": itoa(used)}
			return e
		}
	}
	return nil
}

// Allow implements grpcserver.RateLimiter: the route's permission is its usage type.
func (q *QuotaChecker) Allow(ctx context.Context, p *auth.Principal, a authz.Access) error {
	if p == nil || a.Permission == "" || p.IsOperator() {
		return nil
	}
	tenant, err := uuid.Parse(p.TenantID)
	if err != nil {
		return nil
	}
	return q.Check(ctx, tenant, a.Permission)
}
