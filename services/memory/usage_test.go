package memory

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
	"github.com/manushya-ai/manushya/pkg/metering"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// TestSearchUsageEvents: searches are metered as summed memory.search usage of
// the caller's tenant, identity and mode (one usage.recorded event per sum, N
// searches = N units), published by the meter; no domain event is written per
// search.
func TestSearchUsageEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := context.Background()
	// No bus here: the test hands the module a meter and publishes it by hand.
	meter := metering.New(metering.Options{})
	b.mod.svc.usage = meter
	const n = 5
	for range n {
		_, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "anything", Mode: memoryv1.SearchMode_SEARCH_MODE_KEYWORD})
		require.NoError(t, err)
	}
	_, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "anything"})
	require.NoError(t, err)
	_, err = b.client.SearchMemories(as("admin-b"), &memoryv1.SearchMemoriesRequest{Query: "anything"})
	require.NoError(t, err)
	// A refused search is not metered.
	_, err = b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{})
	requireField(t, err, "query")

	pub := &capture{}
	require.NoError(t, meter.Flush(ctx, pub))
	type sum struct {
		tenant, identity, mode string
		quantity               int64
	}
	var sums []sum
	for _, ev := range pub.events(t) {
		require.Equal(t, metering.EventRecorded, ev.Type)
		var data struct {
			Type       string            `json:"type"`
			Quantity   int64             `json:"quantity"`
			IdentityID string            `json:"identity_id"`
			Properties map[string]string `json:"properties"`
		}
		require.NoError(t, json.Unmarshal(ev.Data, &data))
		require.Equal(t, UsageSearch, data.Type)
		sums = append(sums, sum{ev.Tenant, data.IdentityID, data.Properties["mode"], data.Quantity})
	}
	require.ElementsMatch(t, []sum{
		{b.tenantA.String(), b.user1.String(), "keyword", n},
		{b.tenantA.String(), b.user1.String(), "vector", 1},
		{b.tenantB.String(), b.adminB.String(), "vector", 1},
	}, sums)

	// Searches write nothing to the outbox: subscribers of memory.* and the
	// event store see no event per search.
	var rows int
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT count(*) FROM memory.outbox WHERE subject LIKE '%memory.searched%'").Scan(&rows))
	require.Zero(t, rows)
}

// capture is a stream that acknowledges and keeps every message.
type capture struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (c *capture) PublishMsgAsync(m *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
	f := &ackedFuture{msg: m, ok: make(chan *jetstream.PubAck, 1)}
	f.ok <- &jetstream.PubAck{}
	return f, nil
}

func (c *capture) events(t *testing.T) []bus.Event {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]bus.Event, 0, len(c.msgs))
	for _, m := range c.msgs {
		ev, err := bus.ParseCloudEvent(m.Data)
		require.NoError(t, err)
		out = append(out, ev)
	}
	return out
}

type ackedFuture struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
}

func (f *ackedFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *ackedFuture) Err() <-chan error            { return nil }
func (f *ackedFuture) Msg() *nats.Msg               { return f.msg }

// TestReembed: after a model change every memory of the tenant is embedded with
// the new model, batch by batch; other tenants are untouched; a rerun has
// nothing left to do.
func TestReembed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var created []string
	for i := range 7 {
		m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "memory about topic " + string(rune('a'+i)), Wait: true})
		created = append(created, m.GetId())
	}
	other := b.create(t, "admin-b", &memoryv1.CreateMemoryRequest{Text: "another tenant's memory", Wait: true})
	// One soft-deleted memory is re-embedded too: it may be restored.
	_, err := b.client.DeleteMemory(as("user1"), &memoryv1.DeleteMemoryRequest{Id: created[0]})
	require.NoError(t, err)

	next := hashing.New(384)
	calls := 0
	embed := func(_ context.Context, texts []string) (string, [][]float32, error) {
		calls++
		vecs := next.Embed(texts)
		// A "new model": the same vectors, negated, under another name.
		for _, v := range vecs {
			for i := range v {
				v[i] = -v[i]
			}
		}
		return "new-model", vecs, nil
	}
	res, err := Reembed(ctx, b.db.Pool, b.tenantA, ReembedOptions{Model: "new-model", BatchSize: 3, Embed: embed})
	require.NoError(t, err)
	require.Equal(t, 7, res.Embedded)
	require.Equal(t, 3, calls, "7 memories in batches of 3")

	var n int
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT count(*) FROM memory.memories
WHERE tenant_id = $1 AND embedding_model = 'new-model' AND embedding_status = 2 AND embedding IS NOT NULL`, b.tenantA).Scan(&n))
	require.Equal(t, 7, n)
	var model string
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT embedding_model FROM memory.memories WHERE id = $1", uuid.MustParse(other.GetId())).Scan(&model))
	require.Equal(t, "hashing-v1-384", model)

	// A search embedded with the old model finds no vector of the new one.
	vs, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "memory about topic"})
	require.NoError(t, err)
	require.Empty(t, vs.GetResults())

	// Nothing left: a rerun embeds nothing; --force does them all again.
	res, err = Reembed(ctx, b.db.Pool, b.tenantA, ReembedOptions{Model: "new-model", Embed: embed})
	require.NoError(t, err)
	require.Zero(t, res.Embedded)
	res, err = Reembed(ctx, b.db.Pool, b.tenantA, ReembedOptions{Model: "new-model", Force: true, Embed: embed})
	require.NoError(t, err)
	require.Equal(t, 7, res.Embedded)

	// A fallback model answering stops the run.
	_, err = Reembed(ctx, b.db.Pool, b.tenantA, ReembedOptions{Model: "newer-model", Embed: embed})
	require.ErrorContains(t, err, "instead of")
}
