package memory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pgvector/pgvector-go"
	"golang.org/x/sync/errgroup"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	embeddingv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
	"github.com/manushya-ai/manushya/services/memory/store"
	"github.com/manushya-ai/manushya/services/memory/store/sqlc"
)

// consumerName is the durable JetStream consumer of the embedder.
const consumerName = "memory-embedder"

// embedTimeout bounds one Embed call.
const embedTimeout = 30 * time.Second

// embedWorker computes the embeddings of pending memories: woken by memory.created
// and memory.updated events, and by the sweeper for jobs the events missed or that
// failed and are due for a retry.
type embedWorker struct {
	svc    *Service
	logger *slog.Logger
}

// consume runs the durable consumer until ctx ends. Messages are fetched in
// batches: one blocking fetch for the first, then whatever else is waiting, so a
// burst of creates is embedded in few calls while a single create is not delayed.
func (w *embedWorker) consume(ctx context.Context, b *bus.Bus) error {
	var cons jetstream.Consumer
	for {
		var err error
		// A fetch takes up to EmbedBatchSize*4 messages; the bus's default of
		// 1000 unacknowledged messages was below that at a batch size of 256,
		// and a consumer at its limit got its next messages only about a
		// second after acknowledging (measured: 850-890 memories a second, with
		// the embedder idle most of the time). Room for four fetches.
		cons, err = b.Consumer(ctx, consumerName, []string{bus.TypeFilter(EventCreated), bus.TypeFilter(EventUpdated)},
			func(c *jetstream.ConsumerConfig) {
				c.MaxAckPending = max(c.MaxAckPending, 4*w.svc.cfg.EmbedBatchSize*4)
			})
		if err == nil {
			break
		}
		w.logger.Warn("embedder consumer not ready, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	size := w.svc.cfg.EmbedBatchSize * 4
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msgs, err := fetch(cons, 1, jetstream.FetchContext(fctx))
		cancel()
		if ctx.Err() != nil {
			break
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			if ctx.Err() == nil {
				w.logger.Warn("embedder fetch failed", "err", err)
				time.Sleep(500 * time.Millisecond)
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		if more, err := fetchNoWait(cons, size-1); err == nil {
			msgs = append(msgs, more...)
		}
		w.handle(ctx, msgs)
	}
	return nil
}

func fetch(cons jetstream.Consumer, n int, opts ...jetstream.FetchOpt) ([]jetstream.Msg, error) {
	batch, err := cons.Fetch(n, opts...)
	if err != nil {
		return nil, err
	}
	return drain(batch)
}

func fetchNoWait(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	batch, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, err
	}
	return drain(batch)
}

func drain(batch jetstream.MessageBatch) ([]jetstream.Msg, error) {
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) &&
		!errors.Is(err, context.DeadlineExceeded) && len(out) == 0 {
		return nil, err
	}
	return out, nil
}

// handle embeds the memories of one batch of events, tenant by tenant. An event
// whose memory needs no embedding is acknowledged as is; a tenant whose database
// work fails is redelivered later (embedding failures are not: they are recorded
// and retried by the sweeper).
func (w *embedWorker) handle(ctx context.Context, msgs []jetstream.Msg) {
	byTenant := map[uuid.UUID][]uuid.UUID{}
	msgsOf := map[uuid.UUID][]jetstream.Msg{}
	for _, msg := range msgs {
		ev, err := bus.ParseCloudEvent(msg.Data())
		var data eventData
		if err == nil {
			err = json.Unmarshal(ev.Data, &data)
		}
		tenant, err1 := uuid.Parse(ev.Tenant)
		id, err2 := uuid.Parse(data.MemoryID)
		if err != nil || err1 != nil || err2 != nil {
			w.logger.Warn("embedder dropped a malformed event", "subject", msg.Subject())
			_ = msg.Term()
			continue
		}
		msgsOf[tenant] = append(msgsOf[tenant], msg)
		if data.Reembed {
			byTenant[tenant] = append(byTenant[tenant], id)
		}
	}
	for tenant, ms := range msgsOf {
		err := w.embed(ctx, tenant, byTenant[tenant])
		for _, m := range ms {
			if err != nil {
				_ = m.NakWithDelay(2 * time.Second)
			} else {
				_ = m.Ack()
			}
		}
	}
}

// sweep embeds the jobs that are due: missed by the consumer, or failed and now
// due for a retry.
func (w *embedWorker) sweep(ctx context.Context) error {
	jobs, err := w.svc.store.Global().DueEmbeddingJobs(ctx, 1000)
	if err != nil {
		if ctx.Err() == nil {
			w.logger.Warn("embedding sweeper: list due jobs", "err", err)
		}
		return err
	}
	byTenant := map[uuid.UUID][]uuid.UUID{}
	for _, j := range jobs {
		byTenant[j.TenantID] = append(byTenant[j.TenantID], j.MemoryID)
	}
	for tenant, ids := range byTenant {
		if err := w.embed(ctx, tenant, ids); err != nil {
			return err
		}
	}
	return nil
}

type pendingText struct {
	id uuid.UUID
	// ready: the memory has a vector already, of a model other than the target
	// (a fallback provider's, upgrade.go); it is replaced only by the target's.
	ready bool
	text  string // opened, when sealed
	// stored is the text column as read, sealed the text_sealed column: the
	// guard of the write compares both, so an edit meanwhile is never overwritten.
	stored string
	sealed []byte
}

// embed computes and stores the embeddings of the given memories that are not
// READY, or READY with a model other than the target (a fallback's). It returns
// an error only for database failures; a failing embedding call marks the
// memories FAILED with the reason (those not READY) and schedules a retry with
// backoff.
func (w *embedWorker) embed(ctx context.Context, tenant uuid.UUID, ids []uuid.UUID) error {
	if len(ids) == 0 {
		return nil
	}
	target := w.svc.targetModel(ctx, tenant)
	var todo, sealedTodo []pendingText
	var owners []uuid.UUID
	err := w.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err := tx.Tx.Query(ctx, `SELECT id, identity_id, text, text_sealed, embedding_status = 2 FROM memory.memories
WHERE id = ANY($1) AND (embedding_status <> 2 OR ($2 <> '' AND embedding_model <> $2))`, ids, target)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p pendingText
			var owner uuid.UUID
			if err := rows.Scan(&p.id, &owner, &p.stored, &p.sealed, &p.ready); err != nil {
				return err
			}
			p.text = p.stored
			if p.sealed != nil {
				sealedTodo, owners = append(sealedTodo, p), append(owners, owner)
				continue
			}
			todo = append(todo, p)
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("load pending memories of tenant %s: %w", tenant, err)
	}
	// Sealed texts (tenants with encrypt_text) are opened here, in memory only,
	// to be embedded; one that does not open is recorded as an embedding failure.
	var unopened []pendingText
	var openErr error
	for i, p := range sealedTodo {
		m := store.Memory{ID: p.id, TenantID: tenant, IdentityID: owners[i], TextSealed: p.sealed}
		if err := w.svc.open(ctx, &m); err != nil {
			unopened, openErr = append(unopened, p), err
			continue
		}
		p.text = m.Text
		todo = append(todo, p)
	}
	if len(unopened) > 0 {
		if err := w.fail(ctx, tenant, unopened, fmt.Errorf("the text does not open: %w", openErr)); err != nil {
			return err
		}
	}
	have := map[uuid.UUID]bool{}
	for _, p := range unopened {
		have[p.id] = true
	}
	if len(todo)+len(unopened) < len(ids) {
		// Already embedded (or gone): their jobs are done.
		for _, p := range todo {
			have[p.id] = true
		}
		var done []uuid.UUID
		for _, id := range ids {
			if !have[id] {
				done = append(done, id)
			}
		}
		jobs := w.svc.store.Global()
		if target == "" {
			// Without the target model a fallback's vectors cannot be told
			// from the default's: these jobs wait for a later look (with
			// backoff) rather than drop an upgrade that may be owed.
			err = jobs.EmbeddingJobsFailed(ctx, sqlc.EmbeddingJobsFailedParams{Ids: done,
				LastError: "the embedding service's default model is not known yet"})
		} else {
			err = jobs.EmbeddingJobsDone(ctx, done)
		}
		if err != nil {
			return err
		}
	}
	// Chunks are embedded and stored concurrently: the embedding calls and
	// the writes of several chunks overlap. (Storing a vector no longer inserts
	// it into the HNSW graph: the indexer does that later, see indexer.go.)
	n := w.svc.cfg.EmbedBatchSize
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.svc.cfg.EmbedConcurrency)
	for start := 0; start < len(todo); start += n {
		chunk := todo[start:min(start+n, len(todo))]
		g.Go(func() error { return w.embedChunk(gctx, tenant, target, chunk) })
	}
	return g.Wait()
}

// embedChunk embeds one chunk and stores its vectors. An answer from a model
// other than target (a fallback provider's) is stored for the memories that
// had no vector, not over the fallback vectors of READY ones, and every job of
// the chunk stays queued (with backoff) until the target answers (upgrade.go).
func (w *embedWorker) embedChunk(ctx context.Context, tenant uuid.UUID, target string, chunk []pendingText) error {
	texts := make([]string, len(chunk))
	for i, p := range chunk {
		texts[i] = p.text
	}
	w.svc.metrics.batch.Observe(float64(len(texts)))
	model, vecs, err := w.svc.embedTexts(ctx, tenant, texts)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return w.fail(ctx, tenant, chunk, err)
	}
	fallback := target != "" && model != target
	all := make([]uuid.UUID, len(chunk))
	for i, p := range chunk {
		all[i] = p.id
	}
	if fallback {
		// The fallback's vectors go only to the memories without one.
		var keep []pendingText
		var keepVecs [][]float32
		for i, p := range chunk {
			if !p.ready {
				keep, keepVecs = append(keep, p), append(keepVecs, vecs[i])
			}
		}
		chunk, vecs = keep, keepVecs
	}
	ids := make([]uuid.UUID, len(chunk))
	vals := make([]string, len(chunk))
	storedTexts := make([]string, len(chunk))
	sealed := make([][]byte, len(chunk))
	for i, p := range chunk {
		ids[i], storedTexts[i], sealed[i] = p.id, p.stored, p.sealed
		if !zero(vecs[i]) {
			// A text with no words embeds to the zero vector, which has no
			// direction: it is stored without a vector, found by keyword only.
			vals[i] = pgvector.NewVector(vecs[i]).String()
		}
	}
	var stored []uuid.UUID
	err = w.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		// The text guard skips a memory whose text changed while it was being
		// embedded; its update queued a new job and event. A sealed text is
		// compared as stored (its ciphertext).
		rows, err := tx.Tx.Query(ctx, `
UPDATE memory.memories m
SET embedding = NULLIF(u.vec, '')::vector, embedding_indexed = false, embedding_status = 2, embedding_error = '', embedding_model = $4
FROM unnest($1::uuid[], $2::text[], $3::text[], $5::bytea[]) AS u(id, vec, text, sealed)
WHERE m.id = u.id AND m.text = u.text AND m.text_sealed IS NOT DISTINCT FROM u.sealed
  AND (m.embedding_status <> 2 OR (m.embedding_model <> $4 AND $4 = $6))
RETURNING `+store.Columns, ids, vals, storedTexts, model, sealed, target)
		if err != nil {
			return err
		}
		var done []store.Memory
		for rows.Next() {
			var m store.Memory
			if err := rows.Scan(m.ScanDest()...); err != nil {
				rows.Close()
				return err
			}
			done = append(done, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, m := range done {
			stored = append(stored, m.ID)
			ev, err := newEvent(m, EventEmbedded, eventData{Version: m.Version})
			if err != nil {
				return err
			}
			if err := tx.Emit(ctx, ev); err != nil {
				return err
			}
		}
		if fallback {
			// Every job of the chunk waits for the target model, with backoff.
			err := tx.EmbeddingJobsFailed(ctx, sqlc.EmbeddingJobsFailedParams{Ids: all,
				LastError: fmt.Sprintf("embedded by the fallback model %q; re-embedding with %q once its provider is back", model, target)})
			if err != nil {
				return err
			}
		} else if err := tx.EmbeddingJobsDone(ctx, stored); err != nil {
			return err
		}
		// Last, so the tenant's queue row is held only until the commit.
		return markFresh(ctx, tx, tenant)
	})
	if err != nil {
		return fmt.Errorf("store embeddings of tenant %s: %w", tenant, err)
	}
	result := "ready"
	if fallback {
		result = "fallback"
	}
	w.svc.metrics.embedded.WithLabelValues(result).Add(float64(len(stored)))
	return nil
}

// fail records an embedding failure: the memories become FAILED with the reason
// (so waiting callers return) and their jobs are retried with backoff.
func (w *embedWorker) fail(ctx context.Context, tenant uuid.UUID, chunk []pendingText, cause error) error {
	reason := cause.Error()
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	w.logger.Warn("embedding failed; will retry", "tenant", tenant, "memories", len(chunk), "err", cause)
	w.svc.metrics.embedded.WithLabelValues("failed").Add(float64(len(chunk)))
	ids := make([]uuid.UUID, len(chunk))
	for i, p := range chunk {
		ids[i] = p.id
	}
	err := w.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		if _, err := tx.Tx.Exec(ctx,
			`UPDATE memory.memories SET embedding_status = 3, embedding_error = $2 WHERE id = ANY($1) AND embedding_status <> 2`,
			ids, reason); err != nil {
			return err
		}
		return tx.EmbeddingJobsFailed(ctx, sqlc.EmbeddingJobsFailedParams{Ids: ids, LastError: reason})
	})
	if err != nil {
		return fmt.Errorf("record embedding failure of tenant %s: %w", tenant, err)
	}
	return nil
}

// embedTexts embeds texts through the embedding service, in calls of at most
// embedRequestBytes of text, and checks what it returns.
func (s *Service) embedTexts(ctx context.Context, tenant uuid.UUID, texts []string) (string, [][]float32, error) {
	// A batch of long texts can exceed what one gRPC message may carry
	// (http.max_body_bytes plus 64 KiB, about 1 MiB by default: 64 texts of
	// 100 kB were refused with ResourceExhausted, and the sweeper retried the
	// same batch forever), so the texts go in calls of at most
	// embedRequestBytes each; one text longer than that goes alone.
	var model string
	out := make([][]float32, 0, len(texts))
	for start := 0; start < len(texts); {
		end, size := start+1, len(texts[start])
		for end < len(texts) && size+len(texts[end]) <= embedRequestBytes {
			size += len(texts[end])
			end++
		}
		m, vecs, err := s.embedCall(ctx, tenant, texts[start:end])
		if err != nil {
			return "", nil, err
		}
		if model != "" && m != model {
			// A fallback provider answered part of the batch: vectors of two
			// models cannot be stored as one batch of the configured one.
			return "", nil, fmt.Errorf("embedding service answered with model %q, then %q, in one batch", model, m)
		}
		model, out = m, append(out, vecs...)
		start = end
	}
	return model, out, nil
}

// embedRequestBytes bounds the text of one Embed call, well below the default
// gRPC message limit of the embedding service (about 1 MiB).
const embedRequestBytes = 512 << 10

// embedCall is one Embed call.
func (s *Service) embedCall(ctx context.Context, tenant uuid.UUID, texts []string) (string, [][]float32, error) {
	client, err := s.embeddingClient()
	if err != nil {
		return "", nil, err
	}
	// The embedder works for no caller, and a search's caller may hold no embedding
	// permission: the memory service calls as itself, for the tenant.
	ctx = auth.AsService(ctx, "memory", tenant.String())
	ctx, cancel := context.WithTimeout(ctx, embedTimeout)
	defer cancel()
	resp, err := client.Embed(ctx, &embeddingv1.EmbedRequest{Texts: texts, Model: s.cfg.EmbeddingModel, Dimensions: store.Dimensions})
	if err != nil {
		return "", nil, fmt.Errorf("embedding service: %w", err)
	}
	if len(resp.GetEmbeddings()) != len(texts) {
		return "", nil, fmt.Errorf("embedding service returned %d embeddings for %d texts", len(resp.GetEmbeddings()), len(texts))
	}
	out := make([][]float32, len(texts))
	for i, e := range resp.GetEmbeddings() {
		if len(e.GetValues()) != store.Dimensions {
			return "", nil, fmt.Errorf("embedding model %q returned %d dimensions, the index holds %d",
				resp.GetModel(), len(e.GetValues()), store.Dimensions)
		}
		out[i] = e.GetValues()
	}
	return resp.GetModel(), out, nil
}

func zero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}
