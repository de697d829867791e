package metering_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/metering"
)

// future is an already-settled publish ack.
type future struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *future) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *future) Err() <-chan error            { return f.err }
func (f *future) Msg() *nats.Msg               { return f.msg }

// stream records what is published; while fail is set, every ack is an error.
type stream struct {
	mu   sync.Mutex
	fail bool
	msgs []*nats.Msg
	ids  []string
}

func (s *stream) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &future{msg: m, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	if ev, err := bus.ParseCloudEvent(m.Data); err == nil {
		s.ids = append(s.ids, ev.ID)
	}
	if s.fail {
		f.err <- errors.New("no responders")
		return f, nil
	}
	s.msgs = append(s.msgs, m)
	f.ok <- &jetstream.PubAck{}
	return f, nil
}

func (s *stream) events(t *testing.T) []bus.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]bus.Event, 0, len(s.msgs))
	for _, m := range s.msgs {
		ev, err := bus.ParseCloudEvent(m.Data)
		require.NoError(t, err)
		out = append(out, ev)
	}
	return out
}

type data struct {
	Type       string            `json:"type"`
	Quantity   int64             `json:"quantity"`
	IdentityID string            `json:"identity_id"`
	Properties map[string]string `json:"properties"`
}

func call(t *testing.T, m *metering.Meter, p *auth.Principal, method string, err error) {
	t.Helper()
	ctx := context.Background()
	if p != nil {
		ctx = auth.WithPrincipal(ctx, p)
	}
	_, _ = m.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method},
		func(context.Context, any) (any, error) { return nil, err })
}

func TestMeterSumsCallsPerTenantIdentityAndMethod(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := metering.New(metering.Options{Registerer: reg})
	tenant, ident := uuid.NewString(), uuid.NewString()
	user := &auth.Principal{TenantID: tenant, IdentityID: ident, Kind: auth.KindUser}
	const search = "/manushya.memory.v1.MemoryService/SearchMemories"
	const get = "/manushya.memory.v1.MemoryService/GetMemory"
	for range 7 {
		call(t, m, user, search, nil)
	}
	call(t, m, user, get, status.Error(codes.NotFound, "no")) // served, with an error
	call(t, m, user, get, status.Error(codes.ResourceExhausted, "rate limited"))
	// The suite's own service calling on its own behalf is nobody's usage; a
	// tenant's identity of kind service is a caller like any other.
	call(t, m, &auth.Principal{TenantID: tenant, Kind: auth.KindService, Service: "memory", Roles: []string{auth.RoleAdmin}}, search, nil)
	backend := uuid.NewString()
	call(t, m, &auth.Principal{TenantID: tenant, IdentityID: backend, Kind: auth.KindService}, search, nil)
	call(t, m, nil, search, nil)

	s := &stream{}
	require.NoError(t, m.Flush(context.Background(), s))
	evs := s.events(t)
	require.Len(t, evs, 3)
	got := map[string]int64{}
	for _, ev := range evs {
		require.Equal(t, metering.EventRecorded, ev.Type)
		require.Equal(t, tenant, ev.Tenant)
		var d data
		require.NoError(t, json.Unmarshal(ev.Data, &d))
		require.Equal(t, metering.UsageType, d.Type)
		got[d.IdentityID+" "+d.Properties["route"]] = d.Quantity
	}
	require.Equal(t, map[string]int64{ident + " " + search: 7, ident + " " + get: 1, backend + " " + search: 1}, got)
	n, err := testutil.GatherAndCount(reg, "manushya_metering_requests_total")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "manushya_metering_requests_total" {
			require.InDelta(t, 9, mf.GetMetric()[0].GetCounter().GetValue(), 0, "requests counted")
		}
	}
	require.NoError(t, m.Flush(context.Background(), s))
	require.Len(t, s.events(t), 3, "nothing new to publish")
}

// A flush whose acks fail keeps its events, and the next flush sends them again
// with the same ids, so the stream and the usage service see duplicates, not new
// usage.
func TestMeterRetriesWithTheSameIDs(t *testing.T) {
	t.Parallel()
	m := metering.New(metering.Options{})
	p := &auth.Principal{TenantID: uuid.NewString(), IdentityID: uuid.NewString()}
	call(t, m, p, "/a.B/C", nil)
	s := &stream{fail: true}
	require.Error(t, m.Flush(context.Background(), s))
	require.Empty(t, s.events(t))
	require.Len(t, s.ids, 1)
	failed := s.ids[0]
	call(t, m, p, "/a.B/C", nil)
	s.fail = false
	require.NoError(t, m.Flush(context.Background(), s))
	evs := s.events(t)
	require.Len(t, evs, 2, "the failed interval's sum and the new one")
	require.NotEqual(t, evs[0].ID, evs[1].ID)
	require.Equal(t, failed, evs[0].ID, "resent under its first id")
}

// Add sums any usage type per tenant, identity and properties: many counts become
// one event per distinct key, carrying the summed quantity.
func TestMeterAddSumsUsagePerTypeAndProperties(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := metering.New(metering.Options{Registerer: reg})
	tenant, other, ident := uuid.NewString(), uuid.NewString(), uuid.NewString()
	keyword := metering.Property{Key: "mode", Value: "keyword"}
	vector := metering.Property{Key: "mode", Value: "vector"}
	for range 5 {
		m.Add(tenant, ident, "memory.search", 1, keyword)
	}
	m.Add(tenant, ident, "memory.search", 2, vector)
	m.Add(other, "", "memory.search", 1, vector)
	m.Add(tenant, ident, "embedding.tokens", 40, metering.Property{Key: "model", Value: "m"})
	// Nothing to meter.
	m.Add(tenant, ident, "memory.search", 0, keyword)
	m.Add("", ident, "memory.search", 1, keyword)
	m.Add(tenant, ident, "", 1, keyword)
	// A tenant that is not a UUID is dropped at publication, not the others.
	m.Add("not-a-tenant", ident, "memory.search", 1, keyword)

	s := &stream{}
	require.NoError(t, m.Flush(context.Background(), s))
	type sum struct {
		tenant, identity, typ string
		props                 string
		qty                   int64
	}
	var got []sum
	for _, ev := range s.events(t) {
		require.Equal(t, metering.EventRecorded, ev.Type)
		require.Equal(t, metering.Source, ev.Source)
		var d data
		require.NoError(t, json.Unmarshal(ev.Data, &d))
		props := ""
		for k, v := range d.Properties {
			props += k + "=" + v
		}
		got = append(got, sum{ev.Tenant, d.IdentityID, d.Type, props, d.Quantity})
	}
	require.ElementsMatch(t, []sum{
		{tenant, ident, "memory.search", "mode=keyword", 5},
		{tenant, ident, "memory.search", "mode=vector", 2},
		{other, "", "memory.search", "mode=vector", 1},
		{tenant, ident, "embedding.tokens", "model=m", 40},
	}, got)
	require.InDelta(t, 9, testutil.ToFloat64(metering.UnitsCounter(m).WithLabelValues("memory.search")), 0)
	require.InDelta(t, 40, testutil.ToFloat64(metering.UnitsCounter(m).WithLabelValues("embedding.tokens")), 0)
}

// A nil meter (metering not configured) ignores what it is given.
func TestNilMeterAddIsANoOp(t *testing.T) {
	t.Parallel()
	var m *metering.Meter
	m.Add(uuid.NewString(), "", "memory.search", 1)
}
