package usage_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/pkg/ratelimit"
	"github.com/manushya-ai/manushya/services/usage"
)

// principals: the API key is "tenant|identity|roles|scopes".
var principals = auth.AuthenticatorFunc(func(_ context.Context, cred auth.Credential) (*auth.Principal, error) {
	parts := strings.Split(cred.Value, "|")
	p := &auth.Principal{TenantID: parts[0], IdentityID: parts[1], Roles: strings.Split(parts[2], ",")}
	if len(parts) > 3 && parts[3] != "" {
		p.Scopes = strings.Split(parts[3], ",")
	}
	return p, nil
})

type caller struct{ tenant, identity, roles, scopes string }

func (c caller) ctx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", c.tenant+"|"+c.identity+"|"+c.roles+"|"+c.scopes)
}

type testBundle struct {
	db       *pgtest.DB
	mod      *usage.Module
	usage    usagev1.UsageServiceClient
	limits   adminv1.RateLimitServiceClient
	monitor  adminv1.MonitoringServiceClient
	admin    caller // tenant A admin
	adminB   caller
	operator caller // platform operator (tenant A)
}

func setup(t testing.TB, mk func(*pgtest.DB) usage.Deps) *testBundle {
	t.Helper()
	return setupConfig(t, usage.Config{Types: []string{"acme.widget"}}, mk)
}

func setupConfig(t testing.TB, cfg usage.Config, mk func(*pgtest.DB) usage.Deps) *testBundle {
	t.Helper()
	return setupObserved(t, cfg, mk, nil)
}

// setupObserved is setupConfig with observers in the server's interceptor chain.
func setupObserved(t testing.TB, cfg usage.Config, mk func(*pgtest.DB) usage.Deps, observers []grpc.UnaryServerInterceptor) *testBundle {
	t.Helper()
	db := pgtest.New(t, usage.Migrations())
	deps := usage.Deps{}
	if mk != nil {
		deps = mk(db)
	}
	deps.Pool, deps.Logger = db.Pool, slog.New(slog.DiscardHandler)
	mod, err := usage.New(cfg, deps)
	require.NoError(t, err)
	srv, err := grpcserver.New(grpcserver.Options{Authenticator: principals, Logger: slog.New(slog.DiscardHandler), Observers: observers})
	require.NoError(t, err)
	mod.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	a := uuid.NewString()
	return &testBundle{
		db: db, mod: mod,
		usage: usagev1.NewUsageServiceClient(conn), limits: adminv1.NewRateLimitServiceClient(conn),
		monitor:  adminv1.NewMonitoringServiceClient(conn),
		admin:    caller{tenant: a, identity: uuid.NewString(), roles: "admin"},
		adminB:   caller{tenant: uuid.NewString(), identity: uuid.NewString(), roles: "admin"},
		operator: caller{tenant: a, identity: uuid.NewString(), roles: "admin", scopes: "operator,admin"},
	}
}

func requireReason(t testing.TB, err error, code codes.Code, reason errorsv1.ErrorReason) {
	t.Helper()
	require.Equal(t, code, status.Code(err), "%v", err)
	require.Equal(t, reason, apierr.ReasonOf(err))
}

func qty(n int64) *int64 { return &n }

func TestIngestRefusesPerItemAndDeduplicates(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := b.admin.ctx()
	now := time.Now()
	ident := uuid.NewString()
	late := now.Add(-10 * 24 * time.Hour)
	resp, err := b.usage.IngestUsageEvents(ctx, &usagev1.IngestUsageEventsRequest{Events: []*usagev1.UsageEvent{
		{Id: "e1", Type: "memory.write", IdentityId: ident},
		{Id: "e2", Type: "memory.search", Quantity: qty(3), IdentityId: ident},
		{Id: "e3", Type: "nope.unknown"},
		{Id: "e4", Type: "memory.write", EventTime: timestamppb.New(now.Add(time.Hour))},
		{Id: "e5", Type: "memory.write", EventTime: timestamppb.New(now.Add(-40 * 24 * time.Hour))},
		{Id: "e1", Type: "memory.write", IdentityId: ident},
		{Id: "late", Type: "acme.widget", Quantity: qty(7), EventTime: timestamppb.New(late)},
	}})
	require.NoError(t, err)
	require.EqualValues(t, 4, resp.GetAcceptedCount()+resp.GetDuplicateCount())
	require.EqualValues(t, 3, resp.GetAcceptedCount())
	require.EqualValues(t, 1, resp.GetDuplicateCount())
	require.EqualValues(t, 3, resp.GetRejectedCount())
	for i, field := range map[int]string{2: "events[2].type", 3: "events[3].event_time", 4: "events[4].event_time"} {
		st := status.FromProto(resp.GetResults()[i].GetStatus())
		require.Equal(t, codes.InvalidArgument, st.Code())
		require.Contains(t, st.Message(), field)
	}
	require.True(t, resp.GetResults()[5].GetDuplicate())

	// Sending the batch's valid events again counts nothing twice.
	again, err := b.usage.IngestUsageEvents(ctx, &usagev1.IngestUsageEventsRequest{Events: []*usagev1.UsageEvent{
		{Id: "e1", Type: "memory.write", IdentityId: ident},
	}})
	require.NoError(t, err)
	require.EqualValues(t, 1, again.GetDuplicateCount())

	// Rollups: the late event landed in its own day.
	daily, err := b.usage.ListDailyUsage(ctx, &usagev1.ListDailyUsageRequest{AggregateIdentities: true})
	require.NoError(t, err)
	got := map[string]int64{}
	for _, d := range daily.GetDailyUsage() {
		got[d.GetDate()+" "+d.GetType()] = d.GetQuantity()
	}
	day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
	require.Equal(t, map[string]int64{
		day(now) + " memory.write": 1, day(now) + " memory.search": 3, day(late) + " acme.widget": 7,
	}, got)

	sum, err := b.usage.GetUsageSummary(ctx, &usagev1.GetUsageSummaryRequest{})
	require.NoError(t, err)
	require.EqualValues(t, 30, sum.GetDays())
	require.Len(t, sum.GetTypes(), 3)
	require.EqualValues(t, 2, sum.GetActiveIdentityCount(), "the identity named and the caller, billed by default")
	for _, ts := range sum.GetTypes() {
		if ts.GetType() == "memory.search" {
			require.EqualValues(t, 3, ts.GetQuantity())
			require.Equal(t, ident, ts.GetTopIdentities()[0].GetIdentityId())
			require.Nil(t, ts.ChangeRatio)
		}
	}

	// Raw events page newest first; a token is bound to its filters.
	page, err := b.usage.ListUsageEvents(ctx, &usagev1.ListUsageEventsRequest{PageSize: 2})
	require.NoError(t, err)
	require.Len(t, page.GetEvents(), 2)
	rest, err := b.usage.ListUsageEvents(ctx, &usagev1.ListUsageEventsRequest{PageSize: 2, PageToken: page.GetNextPageToken()})
	require.NoError(t, err)
	require.Len(t, rest.GetEvents(), 1)
	require.Equal(t, "late", rest.GetEvents()[0].GetId())
	_, err = b.usage.ListUsageEvents(ctx, &usagev1.ListUsageEventsRequest{PageSize: 2, Type: "memory.write", PageToken: page.GetNextPageToken()})
	requireReason(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN)

	// CSV export of the daily rollups.
	exp, err := b.usage.ExportUsage(ctx, &usagev1.ExportUsageRequest{StartDate: day(late), EndDate: day(now)})
	require.NoError(t, err)
	var csv strings.Builder
	for {
		chunk, err := exp.Recv()
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		require.Equal(t, "text/csv", chunk.GetContentType())
		csv.Write(chunk.GetData())
		csv.WriteByte('\n')
	}
	require.Contains(t, csv.String(), "date,type,identity_id,quantity,event_count\n")
	require.Contains(t, csv.String(), day(late)+",acme.widget,"+b.admin.identity+",7,1\n")

	// Another tenant sees none of it.
	other, err := b.usage.ListUsageEvents(b.adminB.ctx(), &usagev1.ListUsageEventsRequest{})
	require.NoError(t, err)
	require.Empty(t, other.GetEvents())

	// Re-aggregation rebuilds the same rows: nothing to change, twice.
	for range 2 {
		agg, err := b.usage.AggregateUsage(ctx, &usagev1.AggregateUsageRequest{StartDate: day(late), EndDate: day(now)})
		require.NoError(t, err)
		require.Zero(t, agg.GetRowsUpdated())
		require.Zero(t, agg.GetRowsDeleted())
	}
	// A damaged rollup is repaired.
	conn, err := pgx.Connect(context.Background(), b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	_, err = conn.Exec(context.Background(), "UPDATE usage.rollup_daily SET quantity = 99 WHERE type = 'acme.widget'")
	require.NoError(t, err)
	agg, err := b.usage.AggregateUsage(ctx, &usagev1.AggregateUsageRequest{StartDate: day(late), EndDate: day(now)})
	require.NoError(t, err)
	require.EqualValues(t, 1, agg.GetRowsUpdated())
}

func TestRateLimitAdministration(t *testing.T) {
	t.Parallel()
	var lim *ratelimit.Limiter
	b := setup(t, func(db *pgtest.DB) usage.Deps {
		var err error
		lim, err = ratelimit.New(ratelimit.Options{Defaults: []ratelimit.Limit{}, Source: usage.NewLimitSource(db.Pool)})
		require.NoError(t, err)
		return usage.Deps{Limiter: lim}
	})
	ctx := b.admin.ctx()
	limit := &adminv1.RateLimit{
		TenantId: b.admin.tenant, Scope: adminv1.RateLimitScope_RATE_LIMIT_SCOPE_ROLE, Subject: "user",
		RouteGroup: "memory", Rate: 10, Period: durationpb.New(time.Minute),
	}
	created, err := b.limits.CreateRateLimit(ctx, &adminv1.CreateRateLimitRequest{Limit: limit})
	require.NoError(t, err)
	id := created.GetLimit().GetId()
	_, err = b.limits.CreateRateLimit(ctx, &adminv1.CreateRateLimitRequest{Limit: limit})
	requireReason(t, err, codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS)

	// Global defaults are the operator's.
	global := &adminv1.RateLimit{Scope: adminv1.RateLimitScope_RATE_LIMIT_SCOPE_TENANT, Rate: 1000, Period: durationpb.New(time.Second)}
	_, err = b.limits.CreateRateLimit(ctx, &adminv1.CreateRateLimitRequest{Limit: global})
	requireReason(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	g, err := b.limits.CreateRateLimit(b.operator.ctx(), &adminv1.CreateRateLimitRequest{Limit: global})
	require.NoError(t, err)

	// Tenant B sees the global default but not tenant A's limit.
	_, err = b.limits.GetRateLimit(b.adminB.ctx(), &adminv1.GetRateLimitRequest{Id: id})
	requireReason(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.limits.GetRateLimit(b.adminB.ctx(), &adminv1.GetRateLimitRequest{Id: g.GetLimit().GetId()})
	require.NoError(t, err)
	_, err = b.limits.DeleteRateLimit(b.adminB.ctx(), &adminv1.DeleteRateLimitRequest{Id: g.GetLimit().GetId()})
	requireReason(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	list, err := b.limits.ListRateLimits(b.adminB.ctx(), &adminv1.ListRateLimitsRequest{IncludeDefaults: true})
	require.NoError(t, err)
	require.Len(t, list.GetLimits(), 1)

	upd, err := b.limits.UpdateRateLimit(ctx, &adminv1.UpdateRateLimitRequest{
		Limit: &adminv1.RateLimit{Id: id, Rate: 20, Shadow: true}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"rate", "shadow"}},
	})
	require.NoError(t, err)
	require.EqualValues(t, 20, upd.GetLimit().GetRate())
	require.True(t, upd.GetLimit().GetShadow())
	require.Equal(t, "user", upd.GetLimit().GetSubject())

	// The limiter's source sees the tenant's limit and the global one.
	got, err := b.mod.LimitSource().Limits(context.Background(), b.admin.tenant)
	require.NoError(t, err)
	require.Len(t, got, 2)

	// Every change went to the outbox as ratelimit.updated.
	conn, err := pgx.Connect(context.Background(), b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM usage.outbox WHERE subject LIKE '%.ratelimit.updated'").Scan(&n))
	require.Equal(t, 3, n)

	// Counter state and reset, on the limiter's own keys.
	p := &auth.Principal{TenantID: b.admin.tenant, IdentityID: b.admin.identity, Roles: []string{"user"}}
	lim.Invalidate("")
	require.NoError(t, lim.Allow(context.Background(), p, accessMemory))
	key := "{" + b.admin.tenant + "}:role:user:" + b.admin.identity + ":memory"
	st, err := b.limits.GetRateLimitState(ctx, &adminv1.GetRateLimitStateRequest{Key: key})
	require.NoError(t, err)
	require.EqualValues(t, 19, st.GetState().GetRemaining())
	require.Equal(t, id, st.GetState().GetRateLimitId())
	reset, err := b.limits.ResetRateLimit(ctx, &adminv1.ResetRateLimitRequest{Key: key})
	require.NoError(t, err)
	require.EqualValues(t, 20, reset.GetState().GetRemaining())
	_, err = b.limits.GetRateLimitState(b.adminB.ctx(), &adminv1.GetRateLimitStateRequest{Key: key})
	requireReason(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)

	_, err = b.limits.DeleteRateLimit(ctx, &adminv1.DeleteRateLimitRequest{Id: id})
	require.NoError(t, err)
	_, err = b.limits.GetRateLimit(ctx, &adminv1.GetRateLimitRequest{Id: id})
	requireReason(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
}

func TestQuotasWarnOnceAndEnforce(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, err := b.usage.UpdateUsageQuotas(b.admin.ctx(), &usagev1.UpdateUsageQuotasRequest{})
	requireReason(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	_, err = b.usage.UpdateUsageQuotas(b.operator.ctx(), &usagev1.UpdateUsageQuotasRequest{Quotas: []*usagev1.UsageQuota{
		{Type: "memory.write", MonthlyLimit: 10, Enforcement: usagev1.UsageQuotaEnforcement_USAGE_QUOTA_ENFORCEMENT_ENFORCE},
	}})
	require.NoError(t, err)
	ingest := func(id string, n int64) {
		_, err := b.usage.IngestUsageEvents(b.admin.ctx(), &usagev1.IngestUsageEventsRequest{Events: []*usagev1.UsageEvent{
			{Id: id, Type: "memory.write", Quantity: qty(n)},
		}})
		require.NoError(t, err)
	}
	ingest("a", 8) // 80%: warning
	ingest("b", 1) // still 90%: no second warning
	tenant := uuid.MustParse(b.admin.tenant)
	require.NoError(t, b.mod.Quotas().Check(context.Background(), tenant, "memory.write"))
	ingest("c", 1) // 100%: exceeded
	err = b.mod.Quotas().Check(context.Background(), tenant, "memory.write")
	requireReason(t, err, codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_QUOTA_EXCEEDED)
	require.NoError(t, b.mod.Quotas().Check(context.Background(), tenant, "memory.search"))

	q, err := b.usage.GetUsageQuotas(b.admin.ctx(), &usagev1.GetUsageQuotasRequest{})
	require.NoError(t, err)
	require.EqualValues(t, 10, q.GetQuotas()[0].GetUsed())

	conn, err := pgx.Connect(context.Background(), b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	rows, err := conn.Query(context.Background(), "SELECT split_part(subject, '.', 3) || '.' || split_part(subject, '.', 4) || '.' || split_part(subject, '.', 5) FROM usage.outbox ORDER BY seq")
	require.NoError(t, err)
	subjects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"usage.quota.warning", "usage.quota.exceeded"}, subjects)
}

func TestConsumerMetersDomainEventsAndMonitoringShowsLag(t *testing.T) {
	t.Parallel()
	ns, err := bus.StartEmbedded(t.TempDir(), -1)
	require.NoError(t, err)
	t.Cleanup(ns.Shutdown)
	ctx := context.Background()
	bs, err := bus.Connect(ctx, ns.URL(), "usage-test")
	require.NoError(t, err)
	t.Cleanup(bs.Close)
	_, err = bs.EnsureStream(ctx)
	require.NoError(t, err)
	b := setup(t, func(*pgtest.DB) usage.Deps { return usage.Deps{Bus: bs} })

	owner := uuid.NewString()
	publish := func(typ, subject string, data any) {
		ev, err := bus.NewEvent(b.admin.tenant, typ, "manushya/memory", subject, data)
		require.NoError(t, err)
		payload, err := ev.MarshalCloudEvent()
		require.NoError(t, err)
		_, err = bs.JS.Publish(ctx, ev.NATSSubject(), payload)
		require.NoError(t, err)
	}
	publish("memory.created", uuid.NewString(), map[string]string{"owner_id": owner})
	publish("memory.created", uuid.NewString(), map[string]string{"owner_id": owner})
	publish("identity.created", owner, map[string]string{"id": owner})
	publish("embedding.completed", "model-x", map[string]any{"identity_id": owner, "model": "model-x", "total_tokens": 42})

	// Before the module starts, the consumer does not exist yet; once it runs and
	// drains, its lag is zero.
	require.NoError(t, b.mod.Start(ctx))
	t.Cleanup(func() { _ = b.mod.Stop(context.Background()) })
	require.Eventually(t, func() bool {
		d, err := b.usage.ListDailyUsage(b.admin.ctx(), &usagev1.ListDailyUsageRequest{AggregateIdentities: true})
		return err == nil && len(d.GetDailyUsage()) == 3
	}, 10*time.Second, 50*time.Millisecond)
	d, err := b.usage.ListDailyUsage(b.admin.ctx(), &usagev1.ListDailyUsageRequest{IdentityId: owner})
	require.NoError(t, err)
	require.Len(t, d.GetDailyUsage(), 3)
	require.Equal(t, "embedding.tokens", d.GetDailyUsage()[0].GetType())
	require.EqualValues(t, 42, d.GetDailyUsage()[0].GetQuantity())
	require.Equal(t, "identity.active", d.GetDailyUsage()[1].GetType())
	require.Equal(t, "memory.write", d.GetDailyUsage()[2].GetType())
	require.EqualValues(t, 2, d.GetDailyUsage()[2].GetQuantity())

	cons, err := b.monitor.ListConsumers(b.admin.ctx(), &adminv1.ListConsumersRequest{})
	require.NoError(t, err)
	// The aggregator, and the erasure consumer beside it.
	aggregator := func(cs []*adminv1.ConsumerLag) *adminv1.ConsumerLag {
		for _, c := range cs {
			if c.GetConsumer() == usage.ConsumerName {
				return c
			}
		}
		return nil
	}
	require.Len(t, cons.GetConsumers(), 2)
	require.NotNil(t, aggregator(cons.GetConsumers()))

	// Stopped, the consumer falls behind and monitoring shows it.
	require.NoError(t, b.mod.Stop(ctx))
	publish("memory.created", uuid.NewString(), map[string]string{"owner_id": owner})
	cons, err = b.monitor.ListConsumers(b.admin.ctx(), &adminv1.ListConsumersRequest{})
	require.NoError(t, err)
	// The event waits either in the stream or, when a pull was in flight as the
	// consumer stopped, delivered but unacknowledged: both are lag.
	lag := aggregator(cons.GetConsumers()).GetPendingCount() + aggregator(cons.GetConsumers()).GetAckPendingCount()
	require.GreaterOrEqual(t, lag, int64(1), "%v", aggregator(cons.GetConsumers()))

	health, err := b.monitor.GetHealth(b.admin.ctx(), &adminv1.GetHealthRequest{})
	require.NoError(t, err)
	require.Equal(t, adminv1.DependencyStatus_DEPENDENCY_STATUS_HEALTHY, health.GetStatus())
	queues, err := b.monitor.ListQueues(b.admin.ctx(), &adminv1.ListQueuesRequest{})
	require.NoError(t, err)
	require.Len(t, queues.GetQueues(), 1) // only usage is migrated in this database
	require.Equal(t, "outbox/usage", queues.GetQueues()[0].GetName())
}

func TestSummaryTrendAgainstPreviousPeriod(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	now := time.Now()
	_, err := b.usage.IngestUsageEvents(b.admin.ctx(), &usagev1.IngestUsageEventsRequest{Events: []*usagev1.UsageEvent{
		{Id: "old", Type: "memory.write", Quantity: qty(4), EventTime: timestamppb.New(now.Add(-33 * 24 * time.Hour))},
		{Id: "new", Type: "memory.write", Quantity: qty(6)},
		{Id: "gone", Type: "memory.search", Quantity: qty(2), EventTime: timestamppb.New(now.Add(-34 * 24 * time.Hour))},
	}})
	require.NoError(t, err)
	sum, err := b.usage.GetUsageSummary(b.admin.ctx(), &usagev1.GetUsageSummaryRequest{})
	require.NoError(t, err)
	require.Len(t, sum.GetTypes(), 2)
	w := sum.GetTypes()[1]
	require.Equal(t, "memory.write", w.GetType())
	require.EqualValues(t, 6, w.GetQuantity())
	require.EqualValues(t, 4, w.GetPreviousQuantity())
	require.InDelta(t, 0.5, w.GetChangeRatio(), 1e-9)
	s := sum.GetTypes()[0]
	require.Equal(t, "memory.search", s.GetType())
	require.Zero(t, s.GetQuantity())
	require.InDelta(t, -1, s.GetChangeRatio(), 1e-9)
	require.EqualValues(t, 1, sum.GetActiveIdentityCount())
	require.EqualValues(t, 1, sum.GetPreviousActiveIdentityCount())
}

// violationsOf returns the field violations of a per-event status, by field.
func violationsOf(t testing.TB, r *usagev1.UsageEventResult) map[string]string {
	t.Helper()
	st := status.FromProto(r.GetStatus())
	require.Equal(t, codes.InvalidArgument, st.Code(), "%v", st)
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, apierr.ReasonOf(st.Err()))
	out := map[string]string{}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out[v.GetField()] = v.GetDescription()
			}
		}
	}
	return out
}

// A batch mixing good and bad events passes the validation interceptor: each bad
// event is refused in its own result, naming the field, and the rest is stored.
func TestIngestMixedBatchStoresTheValidRest(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := b.admin.ctx()
	now := time.Now()
	ident := uuid.NewString()
	_, err := b.usage.IngestUsageEvents(ctx, &usagev1.IngestUsageEventsRequest{Events: []*usagev1.UsageEvent{
		{Id: "sent-before", Type: "memory.search", Quantity: qty(2), IdentityId: ident},
	}})
	require.NoError(t, err)

	resp, err := b.usage.IngestUsageEvents(ctx, &usagev1.IngestUsageEventsRequest{Events: []*usagev1.UsageEvent{
		0:  {Id: "ok-1", Type: "memory.write", Quantity: qty(5), IdentityId: ident},
		1:  {Id: "negative", Type: "memory.write", Quantity: qty(-1)},
		2:  {Id: "unknown", Type: "nope.unknown"},
		3:  {Id: "too-old", Type: "memory.write", EventTime: timestamppb.New(now.Add(-36 * 24 * time.Hour))},
		4:  {Id: "future", Type: "memory.write", EventTime: timestamppb.New(now.Add(time.Hour))},
		5:  {Id: "sent-before", Type: "memory.search", Quantity: qty(2), IdentityId: ident},
		6:  {Id: "ok-2", Type: "acme.widget", Quantity: qty(3), IdentityId: ident},
		7:  {Id: "ok-1", Type: "memory.write", Quantity: qty(5), IdentityId: ident},
		8:  {Id: "huge", Type: "memory.write", Quantity: qty(1_000_000_000_000_001)},
		9:  {Id: "bad id!", Source: "no spaces", Type: "Memory.Write", IdentityId: "{" + ident + "}"},
		10: {Id: strings.Repeat("x", 129), Type: "memory.write"},
		11: {Id: "ok-3", Type: "memory.write", Quantity: qty(0), Source: "billing/app-1", EventTime: timestamppb.New(now)},
	}})
	require.NoError(t, err, "bad events must not refuse the batch")
	require.Len(t, resp.GetResults(), 12)
	require.EqualValues(t, 3, resp.GetAcceptedCount())
	require.EqualValues(t, 2, resp.GetDuplicateCount())
	require.EqualValues(t, 7, resp.GetRejectedCount())

	for _, i := range []int{0, 5, 6, 7, 11} {
		require.Equal(t, int32(codes.OK), resp.GetResults()[i].GetStatus().GetCode(), "event %d", i)
	}
	require.False(t, resp.GetResults()[0].GetDuplicate())
	require.True(t, resp.GetResults()[5].GetDuplicate(), "recorded by an earlier call")
	require.True(t, resp.GetResults()[7].GetDuplicate(), "repeated within the batch")
	require.Equal(t, "ok-2", resp.GetResults()[6].GetId())

	want := map[int]map[string]string{
		1:  {"events[1].quantity": "must not be negative"},
		2:  {"events[2].type": `unknown usage type "nope.unknown"`},
		3:  {"events[3].event_time": "more than 35 days old"},
		4:  {"events[4].event_time": "in the future"},
		8:  {"events[8].quantity": "at most 10^15"},
		9:  {"events[9].id": "letters, digits", "events[9].source": "letters, digits", "events[9].type": "lowercase dotted words", "events[9].identity_id": "must be a UUID"},
		10: {"events[10].id": "1 to 128"},
	}
	for i, fields := range want {
		r := resp.GetResults()[i]
		require.False(t, r.GetDuplicate(), "event %d", i)
		got := violationsOf(t, r)
		require.Len(t, got, len(fields), "event %d: %v", i, got)
		for field, why := range fields {
			require.Contains(t, got, field, "event %d", i)
			require.Contains(t, got[field], why, "event %d", i)
		}
	}

	// Only the valid events are stored and rolled up, each counted once.
	events, err := b.usage.ListUsageEvents(ctx, &usagev1.ListUsageEventsRequest{})
	require.NoError(t, err)
	var ids []string
	for _, e := range events.GetEvents() {
		ids = append(ids, e.GetId())
	}
	require.ElementsMatch(t, []string{"sent-before", "ok-1", "ok-2", "ok-3"}, ids)

	daily, err := b.usage.ListDailyUsage(ctx, &usagev1.ListDailyUsageRequest{AggregateIdentities: true})
	require.NoError(t, err)
	type row struct{ quantity, events int64 }
	got := map[string]row{}
	for _, d := range daily.GetDailyUsage() {
		require.Equal(t, now.UTC().Format(time.DateOnly), d.GetDate())
		got[d.GetType()] = row{d.GetQuantity(), d.GetEventCount()}
	}
	require.Equal(t, map[string]row{
		"memory.write": {5, 2}, "memory.search": {2, 1}, "acme.widget": {3, 1},
	}, got)
}

// Only the batch as a whole is checked by the interceptor: empty or oversized.
func TestIngestRefusesEmptyAndOversizedBatches(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, err := b.usage.IngestUsageEvents(b.admin.ctx(), &usagev1.IngestUsageEventsRequest{})
	requireReason(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	events := make([]*usagev1.UsageEvent, 1001)
	for i := range events {
		events[i] = &usagev1.UsageEvent{Type: "memory.write"}
	}
	_, err = b.usage.IngestUsageEvents(b.admin.ctx(), &usagev1.IngestUsageEventsRequest{Events: events})
	requireReason(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	require.Contains(t, status.Convert(err).Message(), "events")
	list, err := b.usage.ListUsageEvents(b.admin.ctx(), &usagev1.ListUsageEventsRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetEvents())
}
