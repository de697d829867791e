package embedding

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/embedder"
	embeddingv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
)

// server holds the thin gRPC handlers.
type server struct {
	embeddingv1.UnimplementedEmbeddingServiceServer
	svc *Service
}

func (s *server) Embed(ctx context.Context, req *embeddingv1.EmbedRequest) (*embeddingv1.EmbedResponse, error) {
	out, err := s.svc.Embed(ctx, req.GetTexts(), req.GetModel(), int(req.GetDimensions()))
	if err != nil {
		return nil, err
	}
	embs := make([]*embeddingv1.Embedding, len(out.Vectors))
	for i, v := range out.Vectors {
		embs[i] = &embeddingv1.Embedding{Values: v}
	}
	return &embeddingv1.EmbedResponse{
		Embeddings:  embs,
		Model:       out.Model,
		Dimensions:  int32(out.Dimensions),
		Provider:    out.Provider,
		Usage:       &embeddingv1.EmbeddingUsage{PromptTokens: int32(out.PromptTokens), TotalTokens: int32(out.PromptTokens)},
		CachedCount: int32(out.Cached),
	}, nil
}

func (s *server) ListModels(context.Context, *embeddingv1.ListModelsRequest) (*embeddingv1.ListModelsResponse, error) {
	r := s.svc.Router()
	resp := &embeddingv1.ListModelsResponse{DefaultModel: r.DefaultModel().Name}
	for _, p := range r.Providers() {
		ep := &embeddingv1.EmbeddingProvider{
			Name:         p.Name,
			Kind:         kindToProto(p.Kind),
			CircuitState: stateToProto(p.State),
			Models: []*embeddingv1.EmbeddingModel{{
				Name: p.Model.Name, Dimensions: int32(p.Model.Dimensions),
				DimensionsConfigurable: p.Model.DimensionsConfigurable, MaxInputTokens: int32(p.Model.MaxInputTokens),
			}},
			LastError: p.LastError,
		}
		if !p.LastErrorAt.IsZero() {
			ep.LastErrorTime = timestamppb.New(p.LastErrorAt)
		}
		resp.Providers = append(resp.Providers, ep)
	}
	return resp, nil
}

func kindToProto(k embedder.Kind) embeddingv1.ProviderKind {
	switch k {
	case embedder.KindOpenAI:
		return embeddingv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE
	case embedder.KindLocal:
		return embeddingv1.ProviderKind_PROVIDER_KIND_LOCAL
	case embedder.KindHashing:
		return embeddingv1.ProviderKind_PROVIDER_KIND_HASHING
	default:
		return embeddingv1.ProviderKind_PROVIDER_KIND_UNSPECIFIED
	}
}

func stateToProto(s embedder.CircuitState) embeddingv1.CircuitState {
	switch s {
	case embedder.CircuitOpen:
		return embeddingv1.CircuitState_CIRCUIT_STATE_OPEN
	case embedder.CircuitHalfOpen:
		return embeddingv1.CircuitState_CIRCUIT_STATE_HALF_OPEN
	default:
		return embeddingv1.CircuitState_CIRCUIT_STATE_CLOSED
	}
}
