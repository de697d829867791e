package memory

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/auth"
	embeddingv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
)

// Memories embedded by a fallback provider.
//
// While the default provider of the embedding service is down, its router
// answers from the next provider of the fallback order (the hashing embedder,
// say), and the answer names that model. Those vectors are stored, so the
// memories stay searchable meanwhile (by queries the same fallback embeds),
// but they are not comparable with the default model's, which every search
// uses again once its provider is back. So a memory stored with a model other
// than the target keeps its embedding job: the sweeper retries it with the
// jobs' backoff (1 s doubling to at most 10 minutes), each try asking the
// embedding service again, and the first answer from the target model
// replaces the fallback's vectors (embedder.go, embedChunk). A try the
// fallback answers again changes nothing.

// targetModelTTL is how long the embedding service's default model is taken
// as known before it is asked again.
const targetModelTTL = 30 * time.Second

// targetModel caches the model memories should end up embedded with.
type targetModel struct {
	mu    sync.Mutex
	name  string
	asked time.Time
}

// targetModel is the model memories should end up embedded with: the configured
// one (Config.EmbeddingModel, which the embedding service serves by name with
// no fallback), else the embedding service's default, asked at most every
// targetModelTTL. "" while it cannot be known: then no stored vector is taken
// for a fallback's.
func (s *Service) targetModel(ctx context.Context, tenant uuid.UUID) string {
	if s.cfg.EmbeddingModel != "" {
		return s.cfg.EmbeddingModel
	}
	t := &s.target
	t.mu.Lock()
	defer t.mu.Unlock()
	ttl := targetModelTTL
	if t.name == "" {
		ttl = targetModelTTL / 6 // not known yet (or the service was down): ask again sooner
	}
	if !t.asked.IsZero() && time.Since(t.asked) < ttl {
		return t.name
	}
	t.asked = time.Now()
	client, err := s.embeddingClient()
	if err != nil {
		return t.name
	}
	ctx, cancel := context.WithTimeout(auth.AsService(ctx, "memory", tenant.String()), 5*time.Second)
	defer cancel()
	resp, err := client.ListModels(ctx, &embeddingv1.ListModelsRequest{})
	if err != nil {
		s.logger.Warn("embedding service: default model unknown", "err", err)
		return t.name // the last one known, if any
	}
	t.name = resp.GetDefaultModel()
	return t.name
}
