package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgvector/pgvector-go"

	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/services/memory/store"
)

// EmbedFunc embeds texts and names the model that did it.
type EmbedFunc func(ctx context.Context, texts []string) (model string, vectors [][]float32, err error)

// ReembedOptions configure Reembed.
type ReembedOptions struct {
	// Model is the model the memories should end up embedded with; memories
	// already embedded with it are skipped (so an interrupted run resumes where
	// it stopped). Empty takes the model of the first batch Embed returns.
	Model string
	// Force re-embeds memories already embedded with Model.
	Force bool
	// BatchSize is the memories per Embed call and per transaction (default 256).
	BatchSize int
	// Embed computes the vectors.
	Embed EmbedFunc
	// Logger receives one progress line per batch.
	Logger *slog.Logger
	// Keys opens the sealed texts of tenants with encrypt_text; without it a
	// tenant with sealed memories fails with an error saying so.
	Keys keyring.Sealer
}

// ReembedResult counts what Reembed did for one tenant.
type ReembedResult struct {
	Embedded int // vectors written
	Skipped  int // texts changed while their batch was embedded: their update re-queued them
}

// Reembed recomputes the vectors of every memory of tenant (soft-deleted ones
// too, since they may be restored; not expired ones, which are about to be
// purged) after a change of embedding model, batch by batch in id order, each
// batch in its own transaction, so a large tenant is never locked at once and
// searches keep working throughout: a search embeds its query with the new
// model and matches the memories already re-embedded (vectors of other models
// are excluded from vector search, and every memory is still found by
// keyword). It writes no memory.embedded events: the memories were searchable
// before and stay so.
func Reembed(ctx context.Context, pool *pgxpool.Pool, tenant uuid.UUID, opts ReembedOptions) (ReembedResult, error) {
	var res ReembedResult
	if opts.Embed == nil {
		return res, errors.New("reembed: no embedder")
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	st := store.New(pool)
	opener := &Service{store: st, keys: opts.Keys}
	target := opts.Model
	var total int64
	err := st.InTenant(ctx, tenant, func(tx *store.Tx) error {
		return tx.Tx.QueryRow(ctx, `SELECT count(*) FROM memory.memories m WHERE `+store.NotExpired+
			` AND ($1 OR $2 = '' OR m.embedding_model <> $2 OR m.embedding IS NULL)`, opts.Force, target).Scan(&total)
	})
	if err != nil {
		return res, fmt.Errorf("reembed: count memories of tenant %s: %w", tenant, err)
	}
	opts.Logger.Info("re-embedding memories", "tenant", tenant, "memories", total, "model", target, "batch_size", opts.BatchSize)
	began := time.Now()
	after := uuid.Nil
	for {
		var ids []uuid.UUID
		var texts, storedTexts []string
		var sealed [][]byte
		err := st.InTenant(ctx, tenant, func(tx *store.Tx) error {
			rows, err := tx.Tx.Query(ctx, `SELECT m.id, m.identity_id, m.text, m.text_sealed FROM memory.memories m WHERE m.id > $1 AND `+store.NotExpired+
				` AND ($2 OR $3 = '' OR m.embedding_model <> $3 OR m.embedding IS NULL) ORDER BY m.id LIMIT $4`,
				after, opts.Force, target, opts.BatchSize)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				m := store.Memory{TenantID: tenant}
				if err := rows.Scan(&m.ID, &m.IdentityID, &m.Text, &m.TextSealed); err != nil {
					return err
				}
				ids, storedTexts, sealed = append(ids, m.ID), append(storedTexts, m.Text), append(sealed, m.TextSealed)
				if err := opener.open(ctx, &m); err != nil {
					return fmt.Errorf("memory %s: %w", m.ID, err)
				}
				texts = append(texts, m.Text)
			}
			return rows.Err()
		})
		if err != nil {
			return res, fmt.Errorf("reembed: read memories of tenant %s: %w", tenant, err)
		}
		if len(ids) == 0 {
			break
		}
		after = ids[len(ids)-1]
		model, vecs, err := opts.Embed(ctx, texts)
		if err != nil {
			return res, fmt.Errorf("reembed: embed a batch of tenant %s: %w", tenant, err)
		}
		if len(vecs) != len(texts) {
			return res, fmt.Errorf("reembed: the embedder returned %d vectors for %d texts", len(vecs), len(texts))
		}
		if target == "" {
			target = model
		} else if model != target {
			// A fallback provider answered: its vectors belong to another model,
			// and writing them would undo what this run is for.
			return res, fmt.Errorf("reembed: model %q answered instead of %q (is its provider down?); rerun to resume", model, target)
		}
		vals := make([]string, len(vecs))
		for i, v := range vecs {
			if len(v) != store.Dimensions {
				return res, fmt.Errorf("reembed: model %q returned %d dimensions, the index holds %d", model, len(v), store.Dimensions)
			}
			if !zero(v) {
				vals[i] = pgvector.NewVector(v).String()
			}
		}
		var written int64
		err = st.InTenant(ctx, tenant, func(tx *store.Tx) error {
			// The text guard skips a memory edited since it was read: the edit
			// queued its own embedding. A sealed text is compared as stored.
			rows, err := tx.Tx.Query(ctx, `
UPDATE memory.memories m
SET embedding = NULLIF(u.vec, '')::vector, embedding_indexed = false, embedding_model = $4, embedding_status = 2, embedding_error = ''
FROM unnest($1::uuid[], $2::text[], $3::text[], $5::bytea[]) AS u(id, vec, text, sealed)
WHERE m.id = u.id AND m.text = u.text AND m.text_sealed IS NOT DISTINCT FROM u.sealed
RETURNING m.id`, ids, vals, storedTexts, model, sealed)
			if err != nil {
				return err
			}
			var done []uuid.UUID
			for rows.Next() {
				var id uuid.UUID
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				done = append(done, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			written = int64(len(done))
			// A pending job of a memory embedded here is done; the job of a
			// skipped (edited) one stays.
			if err := tx.EmbeddingJobsDone(ctx, done); err != nil {
				return err
			}
			// The new vectors are fresh: the indexer puts them in the graph.
			return markFresh(ctx, tx, tenant)
		})
		if err != nil {
			return res, fmt.Errorf("reembed: store a batch of tenant %s: %w", tenant, err)
		}
		res.Embedded += int(written)
		res.Skipped += len(ids) - int(written)
		rate := float64(res.Embedded) / max(time.Since(began).Seconds(), 1e-3)
		opts.Logger.Info("re-embed progress", "tenant", tenant, "done", res.Embedded+res.Skipped, "of", total,
			"model", target, "per_second", int(rate))
	}
	opts.Logger.Info("re-embedded tenant", "tenant", tenant, "embedded", res.Embedded, "skipped", res.Skipped,
		"model", target, "took", time.Since(began).Round(time.Millisecond))
	return res, nil
}
