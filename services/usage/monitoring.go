package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/kv"
	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
)

// outboxSchemas are the service schemas whose outbox backlog is reported; a schema
// not migrated in this database is skipped.
var outboxSchemas = []string{"identity", "memory", "embedding", "policy", "webhooks", "usage"}

// serverErrorCodes count as errors in error rates: server-side failures, not a
// client's bad request.
var serverErrorCodes = []string{"Internal", "Unavailable", "DeadlineExceeded", "Unknown", "DataLoss", "Unimplemented"}

// monitor gathers the deployment's state for MonitoringService.
type monitor struct {
	pool     *pgxpool.Pool
	kv       kv.Store
	bus      *bus.Bus
	gatherer prometheus.Gatherer
	logger   *slog.Logger

	mu        sync.Mutex
	snapshots []rpcSnapshot // oldest first, one per sample
}

// rpcSnapshot is the cumulative handled-RPC counters at one moment.
type rpcSnapshot struct {
	at     time.Time
	counts map[[3]string]float64 // service, method, code
}

func newMonitor(deps Deps, logger *slog.Logger) *monitor {
	m := &monitor{pool: deps.Pool, kv: deps.KV, bus: deps.Bus, logger: logger}
	if g, ok := deps.Registerer.(prometheus.Gatherer); ok {
		m.gatherer = g
	}
	return m
}

// sample records the RPC counters every 15 seconds for a day, so error rates have
// a window to subtract.
func (m *monitor) sample(ctx context.Context) error {
	for {
		if snap, err := m.snapshot(); err == nil {
			m.mu.Lock()
			m.snapshots = append(m.snapshots, snap)
			cut := 0
			for cut < len(m.snapshots) && snap.at.Sub(m.snapshots[cut].at) > 24*time.Hour+time.Minute {
				cut++
			}
			m.snapshots = m.snapshots[cut:]
			m.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(15 * time.Second):
		}
	}
}

func (m *monitor) snapshot() (rpcSnapshot, error) {
	snap := rpcSnapshot{at: time.Now(), counts: map[[3]string]float64{}}
	if m.gatherer == nil {
		return snap, errors.New("no metrics registry")
	}
	mfs, err := m.gatherer.Gather()
	if err != nil {
		return snap, err
	}
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_handled_total" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			var k [3]string
			for _, l := range metric.GetLabel() {
				switch l.GetName() {
				case "grpc_service":
					k[0] = l.GetValue()
				case "grpc_method":
					k[1] = l.GetValue()
				case "grpc_code":
					k[2] = l.GetValue()
				}
			}
			snap.counts[k] += metric.GetCounter().GetValue()
		}
	}
	return snap, nil
}

// monitoringServer implements MonitoringService.
type monitoringServer struct {
	adminv1.UnimplementedMonitoringServiceServer
	mon *monitor
}

func check(name string, kind adminv1.DependencyKind, required bool, fn func(context.Context) (map[string]string, error)) *adminv1.DependencyHealth {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	details, err := fn(ctx)
	h := &adminv1.DependencyHealth{
		Name: name, Kind: kind, Required: required, Latency: durationpb.New(time.Since(start)),
		Status: adminv1.DependencyStatus_DEPENDENCY_STATUS_HEALTHY, Details: details, CheckTime: timestamppb.New(start),
	}
	if err != nil {
		h.Status, h.Message = adminv1.DependencyStatus_DEPENDENCY_STATUS_UNHEALTHY, err.Error()
	}
	return h
}

func (s *monitoringServer) GetHealth(ctx context.Context, _ *adminv1.GetHealthRequest) (*adminv1.GetHealthResponse, error) {
	m := s.mon
	var deps []*adminv1.DependencyHealth
	var wg sync.WaitGroup
	var mu sync.Mutex
	add := func(h *adminv1.DependencyHealth) { mu.Lock(); deps = append(deps, h); mu.Unlock() }
	if m.pool != nil {
		wg.Go(func() {
			add(check("postgresql", adminv1.DependencyKind_DEPENDENCY_KIND_DATABASE, true, func(ctx context.Context) (map[string]string, error) {
				var version string
				if err := m.pool.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
					return nil, errors.New("query failed")
				}
				st := m.pool.Stat()
				return map[string]string{"version": version, "pool_in_use": fmt.Sprint(st.AcquiredConns()), "pool_max": fmt.Sprint(st.MaxConns())}, nil
			}))
		})
	}
	if m.kv != nil {
		wg.Go(func() {
			_, isRedis := kv.RedisClient(m.kv)
			h := check("redis", adminv1.DependencyKind_DEPENDENCY_KIND_CACHE, false, func(ctx context.Context) (map[string]string, error) {
				if err := m.kv.Ping(ctx); err != nil {
					return nil, errors.New("ping failed")
				}
				return map[string]string{"backend": map[bool]string{true: "redis", false: "in-process"}[isRedis]}, nil
			})
			if !isRedis {
				h.Status = adminv1.DependencyStatus_DEPENDENCY_STATUS_DISABLED
			}
			add(h)
		})
	}
	if m.bus != nil {
		wg.Go(func() {
			add(check("nats", adminv1.DependencyKind_DEPENDENCY_KIND_MESSAGE_BUS, true, func(context.Context) (map[string]string, error) {
				rtt, err := m.bus.Conn.RTT()
				if err != nil {
					return nil, errors.New("not connected")
				}
				return map[string]string{"rtt": rtt.String(), "server": m.bus.Conn.ConnectedServerVersion()}, nil
			}))
		})
	}
	wg.Wait()
	slices.SortFunc(deps, func(a, b *adminv1.DependencyHealth) int { return strings.Compare(a.GetName(), b.GetName()) })
	resp := &adminv1.GetHealthResponse{Status: adminv1.DependencyStatus_DEPENDENCY_STATUS_HEALTHY, Dependencies: deps, CheckTime: timestamppb.Now()}
	for _, d := range deps {
		if d.GetRequired() && d.GetStatus() == adminv1.DependencyStatus_DEPENDENCY_STATUS_UNHEALTHY {
			resp.Status = adminv1.DependencyStatus_DEPENDENCY_STATUS_UNHEALTHY
		} else if d.GetStatus() == adminv1.DependencyStatus_DEPENDENCY_STATUS_UNHEALTHY && resp.GetStatus() == adminv1.DependencyStatus_DEPENDENCY_STATUS_HEALTHY {
			resp.Status = adminv1.DependencyStatus_DEPENDENCY_STATUS_DEGRADED
		}
	}
	return resp, nil
}

func (s *monitoringServer) ListConsumers(ctx context.Context, req *adminv1.ListConsumersRequest) (*adminv1.ListConsumersResponse, error) {
	m := s.mon
	resp := &adminv1.ListConsumersResponse{}
	if m.bus == nil {
		return resp, nil
	}
	streams := []string{m.bus.StreamName()}
	if req.GetStream() != "" {
		streams = []string{req.GetStream()}
	}
	for _, name := range streams {
		st, err := m.bus.JS.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		lister := st.ListConsumers(ctx)
		for info := range lister.Info() {
			c := &adminv1.ConsumerLag{
				Stream: name, Consumer: info.Name, PendingCount: int64(info.NumPending), AckPendingCount: int64(info.NumAckPending),
				RedeliveredCount: int64(info.NumRedelivered), WaitingCount: int64(info.NumWaiting),
				DeliveredStreamSequence: info.Delivered.Stream, AckFloorStreamSequence: info.AckFloor.Stream,
			}
			if info.Delivered.Last != nil {
				c.LastActiveTime = timestamppb.New(*info.Delivered.Last)
			}
			resp.Consumers = append(resp.Consumers, c)
		}
		if err := lister.Err(); err != nil {
			return nil, fmt.Errorf("list consumers of %s: %w", name, err)
		}
	}
	slices.SortFunc(resp.GetConsumers(), func(a, b *adminv1.ConsumerLag) int {
		return strings.Compare(a.GetStream()+"\x00"+a.GetConsumer(), b.GetStream()+"\x00"+b.GetConsumer())
	})
	return resp, nil
}

func (s *monitoringServer) ListQueues(ctx context.Context, req *adminv1.ListQueuesRequest) (*adminv1.ListQueuesResponse, error) {
	queues, err := s.mon.queues(ctx, req.GetKind())
	if err != nil {
		return nil, err
	}
	return &adminv1.ListQueuesResponse{Queues: queues}, nil
}

// workQueue is a cross-tenant work table whose rows are the waiting items. Like the
// outboxes these tables hold ids and times only and carry no RLS, so the monitor
// reads them directly.
type workQueue struct {
	name    string
	kind    adminv1.QueueKind
	service string
	table   string
	// query returns depth, in-flight count, failed count and the oldest waiting
	// item's time (NULL when nothing waits) from table.
	query string
}

// workQueues are the queues besides the outboxes: webhook deliveries pending or
// retrying (in flight: leased by a worker; the oldest waiting item is the longest
// overdue one), and memories waiting for their embedding (failed: the last attempt
// failed and a retry is scheduled).
var workQueues = []workQueue{
	{
		name: "webhooks/deliveries", kind: adminv1.QueueKind_QUEUE_KIND_WEBHOOK_DELIVERIES, service: "webhooks",
		table: "webhooks.delivery_queue",
		query: `SELECT count(*), count(*) FILTER (WHERE leased_until > now()), 0,
			min(next_attempt_time) FILTER (WHERE next_attempt_time <= now() AND (leased_until IS NULL OR leased_until <= now()))
			FROM webhooks.delivery_queue`,
	},
	{
		name: "memory/embedding", kind: adminv1.QueueKind_QUEUE_KIND_EMBEDDING, service: "memory",
		table: "memory.embedding_jobs",
		query: `SELECT count(*) FILTER (WHERE last_error = ''), 0, count(*) FILTER (WHERE last_error <> ''),
			min(retry_time) FILTER (WHERE last_error = '' AND retry_time <= now())
			FROM memory.embedding_jobs`,
	},
}

// queues reads every queue of kind (all kinds when unspecified) that exists in this
// database and is readable by this process.
func (m *monitor) queues(ctx context.Context, kind adminv1.QueueKind) ([]*adminv1.QueueDepth, error) {
	if m.pool == nil {
		return nil, nil
	}
	var out []*adminv1.QueueDepth
	if kind == adminv1.QueueKind_QUEUE_KIND_UNSPECIFIED || kind == adminv1.QueueKind_QUEUE_KIND_OUTBOX {
		for _, schema := range outboxSchemas {
			q := workQueue{
				name: "outbox/" + schema, kind: adminv1.QueueKind_QUEUE_KIND_OUTBOX, service: schema, table: schema + ".outbox",
				query: "SELECT count(*), 0, 0, min(created_at) FROM " + pgx.Identifier{schema, "outbox"}.Sanitize(),
			}
			qd, err := m.queue(ctx, q)
			if err != nil {
				return nil, err
			}
			if qd != nil {
				out = append(out, qd)
			}
		}
	}
	for _, q := range workQueues {
		if kind != adminv1.QueueKind_QUEUE_KIND_UNSPECIFIED && kind != q.kind {
			continue
		}
		qd, err := m.queue(ctx, q)
		if err != nil {
			return nil, err
		}
		if qd != nil {
			out = append(out, qd)
		}
	}
	return out, nil
}

// queue reads one queue; nil when its table does not exist here or this process's
// role cannot read it (a schema this process does not serve).
func (m *monitor) queue(ctx context.Context, q workQueue) (*adminv1.QueueDepth, error) {
	var exists bool
	if err := m.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", q.table).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look up %s: %w", q.table, err)
	}
	if !exists {
		return nil, nil
	}
	var (
		depth, inFlight, failed int64
		oldest                  *time.Time
	)
	if err := m.pool.QueryRow(ctx, q.query).Scan(&depth, &inFlight, &failed, &oldest); err != nil {
		m.logger.DebugContext(ctx, "queue not readable", "queue", q.name, "err", err)
		return nil, nil
	}
	qd := &adminv1.QueueDepth{
		Name: q.name, Kind: q.kind, Service: q.service, Depth: depth, InFlightCount: inFlight, FailedCount: failed,
		OldestAge: durationpb.New(0),
	}
	if oldest != nil && depth > 0 {
		qd.OldestAge = durationpb.New(max(time.Since(*oldest), 0))
	}
	return qd, nil
}

func (s *monitoringServer) ListErrorRates(_ context.Context, req *adminv1.ListErrorRatesRequest) (*adminv1.ListErrorRatesResponse, error) {
	m := s.mon
	window := 5 * time.Minute
	if req.WindowSeconds != nil {
		window = time.Duration(req.GetWindowSeconds()) * time.Second
	}
	now, err := m.snapshot()
	if err != nil {
		return &adminv1.ListErrorRatesResponse{Window: durationpb.New(window)}, nil
	}
	// The newest sample at least window old; without one, everything since start.
	base := rpcSnapshot{counts: map[[3]string]float64{}}
	m.mu.Lock()
	for _, snap := range m.snapshots {
		if now.at.Sub(snap.at) >= window {
			base = snap
		}
	}
	m.mu.Unlock()
	rows := map[[2]string]*adminv1.MethodErrorRate{}
	for k, v := range now.counts {
		if req.GetService() != "" && k[0] != req.GetService() {
			continue
		}
		n := int64(v - base.counts[k])
		if n <= 0 {
			continue
		}
		r := rows[[2]string{k[0], k[1]}]
		if r == nil {
			r = &adminv1.MethodErrorRate{Service: k[0], Method: k[1], CodeCounts: map[string]int64{}}
			rows[[2]string{k[0], k[1]}] = r
		}
		r.RequestCount += n
		r.CodeCounts[codeName(k[2])] += n
		if slices.Contains(serverErrorCodes, k[2]) {
			r.ErrorCount += n
		}
	}
	resp := &adminv1.ListErrorRatesResponse{Window: durationpb.New(window)}
	for _, r := range rows {
		r.ErrorRate = float64(r.GetErrorCount()) / float64(r.GetRequestCount())
		resp.Methods = append(resp.Methods, r)
	}
	slices.SortFunc(resp.GetMethods(), func(a, b *adminv1.MethodErrorRate) int {
		if a.GetErrorRate() != b.GetErrorRate() {
			if a.GetErrorRate() > b.GetErrorRate() {
				return -1
			}
			return 1
		}
		return strings.Compare(a.GetService()+"/"+a.GetMethod(), b.GetService()+"/"+b.GetMethod())
	})
	return resp, nil
}

// codeName turns the metrics' code label ("NotFound") into the canonical name
// ("NOT_FOUND").
func codeName(label string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range label {
		if prevLower && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		prevLower = r >= 'a' && r <= 'z'
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
