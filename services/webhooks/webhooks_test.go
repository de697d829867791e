package webhooks_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/keyring/keyringtest"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/webhooks"
)

var (
	tenantA = uuid.MustParse("0193aaaa-0000-7000-8000-00000000000a").String()
	tenantB = uuid.MustParse("0193bbbb-0000-7000-8000-00000000000b").String()
)

type testBundle struct {
	db       *pgtest.DB
	bus      *bus.Bus
	mod      *webhooks.Module
	hooks    webhooksv1.WebhookServiceClient
	events   eventsv1.EventServiceClient
	stopOnce func()
	addr     string
	nats     *bus.Embedded
	natsDir  string
	keyring  *keyring.Keyring
}

// setup runs the webhooks module against a fresh database and an embedded NATS,
// with a retry schedule short enough for tests.
func setup(t testing.TB, tweak ...func(*webhooks.Config)) *testBundle {
	t.Helper()
	db := pgtest.New(t, webhooks.Migrations(), keyring.Migrations())
	natsDir := t.TempDir()
	srvNATS, err := bus.StartEmbedded(natsDir, -1)
	require.NoError(t, err)
	t.Cleanup(func() { srvNATS.Shutdown() })
	b, err := bus.Connect(t.Context(), srvNATS.URL(), t.Name())
	require.NoError(t, err)
	t.Cleanup(b.Close)
	_, err = b.EnsureStream(t.Context())
	require.NoError(t, err)

	cfg := webhooks.Config{
		AllowedAddresses: []string{"127.0.0.0/8", "::1"},
		RetrySchedule:    []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond},
		PollInterval:     20 * time.Millisecond,
		Timeout:          5 * time.Second,
		ConsumerWorkers:  4,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	// More connections than pgtest's default pool, as database.max_conns would give.
	pool, err := postgres.Connect(t.Context(), db.AppURL, postgres.WithMaxConns(64))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	kr := keyringtest.New(t, pool, keyringtest.Tenants(uuid.MustParse(tenantA), uuid.MustParse(tenantB)))
	mod, err := webhooks.New(cfg, webhooks.Deps{Pool: pool, Bus: b, Logger: slog.New(slog.DiscardHandler), Keyring: kr})
	require.NoError(t, err)
	srv, err := grpcserver.New(grpcserver.Options{Logger: slog.New(slog.DiscardHandler), Authenticator: auth.AuthenticatorFunc(authenticate)})
	require.NoError(t, err)
	mod.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, mod.Start(context.Background()))
	var once sync.Once
	stop := func() { once.Do(func() { _ = mod.Stop(context.Background()) }) }
	t.Cleanup(stop)
	return &testBundle{
		db: db, bus: b, mod: mod, stopOnce: stop, addr: lis.Addr().String(), keyring: kr,
		nats: srvNATS, natsDir: natsDir,
		hooks: webhooksv1.NewWebhookServiceClient(conn), events: eventsv1.NewEventServiceClient(conn),
	}
}

// authenticate accepts "mk_<tenant>" as an admin of that tenant.
func authenticate(_ context.Context, cred auth.Credential) (*auth.Principal, error) {
	tenant, ok := strings.CutPrefix(cred.Value, "mk_")
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "bad key")
	}
	return &auth.Principal{TenantID: tenant, IdentityID: uuid.NewString(), Kind: auth.KindUser, Roles: []string{auth.RoleAdmin}}, nil
}

func as(tenant string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", "mk_"+tenant)
}

// publish sends a domain event on the bus as a service's outbox relay would.
func (b *testBundle) publish(t testing.TB, tenant, typ string, data any) bus.Event {
	t.Helper()
	ev, err := bus.NewEvent(tenant, typ, "/manushya/test", uuid.NewString(), data)
	require.NoError(t, err)
	payload, err := ev.MarshalCloudEvent()
	require.NoError(t, err)
	_, err = b.bus.JS.Publish(t.Context(), ev.NATSSubject(), payload, jetstream.WithMsgID(ev.ID))
	require.NoError(t, err)
	return ev
}

type received struct {
	header http.Header
	body   []byte
}

// receiver is a webhook endpoint recording what it is sent; respond decides the
// answer.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	respond func(r *http.Request, n int) int
}

func newReceiver(t testing.TB, respond func(r *http.Request, n int) int) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: body})
		n := len(rc.got)
		rc.mu.Unlock()
		code := http.StatusOK
		if rc.respond != nil {
			code = rc.respond(r, n)
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// okIDs are the distinct webhook-ids that were answered 2xx... approximated as
// every id seen on a request the receiver accepted last.
func (rc *receiver) distinctIDs() map[string]bool {
	ids := map[string]bool{}
	for _, r := range rc.all() {
		ids[r.header.Get("webhook-id")] = true
	}
	return ids
}

func (b *testBundle) createWebhook(t testing.TB, tenant, url string, events ...string) *webhooksv1.Webhook {
	t.Helper()
	resp, err := b.hooks.CreateWebhook(as(tenant), &webhooksv1.CreateWebhookRequest{Name: "hook", Url: url, Events: events})
	require.NoError(t, err)
	return resp.GetWebhook()
}

func verify(t *testing.T, secret string, r received) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	require.NoError(t, wh.Verify(r.body, r.header))
}

func TestContractExampleDeliversSignedEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, nil)
	resp, err := b.hooks.CreateWebhook(as(tenantA), &webhooksv1.CreateWebhookRequest{
		Name: "Identity Events Webhook", Url: rc.URL + "/hooks",
		Events: []string{"identity.created", "identity.updated"},
	})
	require.NoError(t, err)
	hook := resp.GetWebhook()
	require.True(t, strings.HasPrefix(hook.GetSecret(), "whsec_"))
	require.True(t, hook.GetEnabled())

	got, err := b.hooks.GetWebhook(as(tenantA), &webhooksv1.GetWebhookRequest{Id: hook.GetId()})
	require.NoError(t, err)
	require.Empty(t, got.GetWebhook().GetSecret(), "the secret is shown once")

	created := b.publish(t, tenantA, "identity.created", map[string]any{"id": "x", "external_id": "user@example.com"})
	b.publish(t, tenantA, "memory.created", map[string]any{"id": "m"})
	b.publish(t, tenantB, "identity.created", map[string]any{"id": "other tenant"})
	updated := b.publish(t, tenantA, "identity.updated", map[string]any{"id": "x"})

	require.Eventually(t, func() bool { return len(rc.all()) >= 2 }, 10*time.Second, 10*time.Millisecond)
	types := map[string]bool{}
	for _, r := range rc.all() {
		verify(t, hook.GetSecret(), r)
		var body struct {
			Type    string         `json:"type"`
			EventID string         `json:"event_id"`
			Data    map[string]any `json:"data"`
		}
		require.NoError(t, json.Unmarshal(r.body, &body))
		types[body.Type] = true
		require.Contains(t, []string{created.ID, updated.ID}, body.EventID)
	}
	require.Equal(t, map[string]bool{"identity.created": true, "identity.updated": true}, types)

	// The event store has every event of the tenant, and only those.
	var list *eventsv1.ListEventsResponse
	require.Eventually(t, func() bool {
		list, err = b.events.ListEvents(as(tenantA), &eventsv1.ListEventsRequest{})
		return err == nil && len(list.GetEvents()) == 3
	}, 10*time.Second, 20*time.Millisecond)
	ev, err := b.events.GetEvent(as(tenantA), &eventsv1.GetEventRequest{Id: created.ID})
	require.NoError(t, err)
	require.Equal(t, "user@example.com", ev.GetEvent().GetData().GetFields()["external_id"].GetStringValue())
	_, err = b.events.GetEvent(as(tenantB), &eventsv1.GetEventRequest{Id: created.ID})
	require.Equal(t, codes.NotFound, status.Code(err))

	mem, err := b.events.ListEvents(as(tenantA), &eventsv1.ListEventsRequest{Type: "memory.*"})
	require.NoError(t, err)
	require.Len(t, mem.GetEvents(), 1)

	// Keyset paging walks every event once.
	seen := map[string]bool{}
	req := &eventsv1.ListEventsRequest{PageSize: 2}
	for range 3 {
		page, err := b.events.ListEvents(as(tenantA), req)
		require.NoError(t, err)
		for _, e := range page.GetEvents() {
			require.False(t, seen[e.GetId()])
			seen[e.GetId()] = true
		}
		if page.GetNextPageToken() == "" {
			break
		}
		req.PageToken = page.GetNextPageToken()
	}
	require.Len(t, seen, 3)

	// The delivery log has each delivery with its attempt.
	var dels *webhooksv1.ListWebhookDeliveriesResponse
	require.Eventually(t, func() bool {
		dels, err = b.hooks.ListWebhookDeliveries(as(tenantA), &webhooksv1.ListWebhookDeliveriesRequest{WebhookId: hook.GetId()})
		if err != nil || len(dels.GetDeliveries()) != 2 {
			return false
		}
		for _, d := range dels.GetDeliveries() {
			if d.GetStatus() != webhooksv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_SUCCEEDED {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond)
	d, err := b.hooks.GetWebhookDelivery(as(tenantA), &webhooksv1.GetWebhookDeliveryRequest{WebhookId: hook.GetId(), Id: dels.GetDeliveries()[0].GetId()})
	require.NoError(t, err)
	require.Len(t, d.GetAttempts(), 1)
	require.EqualValues(t, 200, d.GetAttempts()[0].GetResponseStatusCode())
	require.Equal(t, "[redacted]", d.GetAttempts()[0].GetRequestHeaders()["Webhook-Signature"])

	stats, err := b.hooks.GetWebhookStats(as(tenantA), &webhooksv1.GetWebhookStatsRequest{Id: hook.GetId()})
	require.NoError(t, err)
	require.EqualValues(t, 2, stats.GetStats().GetSucceededCount())
	require.InDelta(t, 1.0, stats.GetStats().GetSuccessRate(), 0.001)

	// Another tenant sees none of it.
	_, err = b.hooks.GetWebhook(as(tenantB), &webhooksv1.GetWebhookRequest{Id: hook.GetId()})
	require.Equal(t, codes.NotFound, status.Code(err))
}
