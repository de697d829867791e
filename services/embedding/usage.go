package embedding

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/embedder"
	"github.com/manushya-ai/manushya/pkg/outbox"
	"github.com/manushya-ai/manushya/pkg/postgres"
)

// EventSource is the CloudEvents source of the service's events.
const EventSource = "manushya/embedding"

// EventCompleted meters embedding tokens; the usage service bills its
// total_tokens as "embedding.tokens".
const EventCompleted = "embedding.completed"

// usageKey is what tokens are summed by between flushes.
type usageKey struct {
	tenant, identity, model, provider string
}

type usageSum struct {
	tokens, texts, requests int64
}

// usageMeter sums the tokens providers consumed per tenant, identity, model and
// provider, and writes one embedding.completed event per sum to the outbox every
// interval (and on Stop). Writing an event per request would put a database
// transaction on every Embed; metering needs the sums, not the requests. A
// crash loses at most one interval's sums.
type usageMeter struct {
	pool     *pgxpool.Pool
	logger   *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	pending map[usageKey]usageSum
}

func newUsageMeter(pool *pgxpool.Pool, logger *slog.Logger, interval time.Duration) *usageMeter {
	return &usageMeter{pool: pool, logger: logger, interval: interval, pending: map[usageKey]usageSum{}}
}

// add counts a served request. Answers wholly from the cache cost nothing.
func (u *usageMeter) add(p *auth.Principal, out *embedder.Output, texts int) {
	if u == nil || p == nil || out.PromptTokens <= 0 || p.TenantID == "" {
		return
	}
	k := usageKey{tenant: p.TenantID, identity: p.IdentityID, model: out.Model, provider: out.Provider}
	u.mu.Lock()
	s := u.pending[k]
	s.tokens += int64(out.PromptTokens)
	s.texts += int64(texts - out.Cached)
	s.requests++
	u.pending[k] = s
	u.mu.Unlock()
}

// run flushes every interval until ctx ends, then once more.
func (u *usageMeter) run(ctx context.Context) error {
	t := time.NewTicker(u.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := u.flush(ctx); err != nil {
				u.logger.WarnContext(ctx, "embedding usage not written; will retry", "err", err)
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := u.flush(fctx); err != nil {
				u.logger.ErrorContext(fctx, "embedding usage lost on shutdown", "err", err)
			}
			return ctx.Err()
		}
	}
}

type completedData struct {
	IdentityID  string `json:"identity_id,omitempty"`
	Model       string `json:"model"`
	Provider    string `json:"provider"`
	Tokens      int64  `json:"tokens"`
	TotalTokens int64  `json:"total_tokens"`
	Texts       int64  `json:"texts"`
	Requests    int64  `json:"requests"`
}

// flush writes the pending sums in one transaction; on failure they are put
// back to be written with the next flush.
func (u *usageMeter) flush(ctx context.Context) error {
	u.mu.Lock()
	batch := u.pending
	u.pending = map[usageKey]usageSum{}
	u.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	events := make([]bus.Event, 0, len(batch))
	for k, s := range batch {
		ev, err := bus.NewEvent(k.tenant, EventCompleted, EventSource, k.model, completedData{
			IdentityID: k.identity, Model: k.model, Provider: k.provider,
			Tokens: s.tokens, TotalTokens: s.tokens, Texts: s.texts, Requests: s.requests,
		})
		if err != nil {
			// A principal whose tenant is not a UUID cannot be metered; drop it
			// rather than block every other sum.
			u.logger.ErrorContext(ctx, "embedding usage event invalid; dropped", "tenant", k.tenant, "err", err)
			continue
		}
		events = append(events, ev)
	}
	err := postgres.InTx(ctx, u.pool, func(tx pgx.Tx) error { return outbox.Write(ctx, tx, Schema, events...) })
	if err != nil {
		u.mu.Lock()
		for k, s := range batch {
			p := u.pending[k]
			p.tokens += s.tokens
			p.texts += s.texts
			p.requests += s.requests
			u.pending[k] = p
		}
		u.mu.Unlock()
		return fmt.Errorf("write %d usage events: %w", len(events), err)
	}
	return nil
}
