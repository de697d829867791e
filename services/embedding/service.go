package embedding

import (
	"context"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/embedder"
)

// Service is the embedding domain logic behind the gRPC handlers.
type Service struct {
	router *embedder.Router
	cfg    Config
	usage  *usageMeter // nil without a database
}

// Router exposes the provider router.
func (s *Service) Router() *embedder.Router { return s.router }

// maxViolations bounds how many bad texts one error lists.
const maxViolations = 10

// Validate checks texts and dims against the service's limits, naming each bad
// field ("texts[3]").
func (s *Service) Validate(texts []string, dims int) error {
	var vs []apierr.Violation
	switch {
	case len(texts) == 0:
		vs = append(vs, apierr.Violation{Field: "texts", Description: "at least one text is required"})
	case len(texts) > s.cfg.MaxTexts:
		vs = append(vs, apierr.Violation{Field: "texts", Description: "at most " + itoa(s.cfg.MaxTexts) + " texts per request, got " + itoa(len(texts))})
	}
	for i, t := range texts {
		if len(vs) >= maxViolations {
			break
		}
		field := "texts[" + itoa(i) + "]"
		switch {
		case t == "":
			vs = append(vs, apierr.Violation{Field: field, Description: "must not be empty"})
		case !utf8.ValidString(t):
			vs = append(vs, apierr.Violation{Field: field, Description: "must be valid UTF-8"})
		case len(t) > s.cfg.MaxTextChars && utf8.RuneCountInString(t) > s.cfg.MaxTextChars:
			vs = append(vs, apierr.Violation{Field: field, Description: "must be at most " + itoa(s.cfg.MaxTextChars) + " characters"})
		case strings.TrimFunc(t, unicode.IsSpace) == "":
			vs = append(vs, apierr.Violation{Field: field, Description: "must contain more than white space"})
		}
	}
	if dims < 0 {
		vs = append(vs, apierr.Violation{Field: "dimensions", Description: "must not be negative"})
	}
	if len(vs) > 0 {
		return apierr.InvalidArgument(vs...)
	}
	return nil
}

// Embed validates the request and embeds texts, mapping the router's errors to
// API errors.
func (s *Service) Embed(ctx context.Context, texts []string, model string, dims int) (*embedder.Output, error) {
	if err := s.Validate(texts, dims); err != nil {
		return nil, err
	}
	out, err := s.router.Embed(ctx, texts, model, dims)
	switch {
	case err == nil:
		p, _ := auth.FromContext(ctx)
		s.usage.add(p, out, len(texts))
		return out, nil
	case errors.Is(err, embedder.ErrUnknownModel):
		return nil, apierr.Field("model", "unknown model %q: ListModels lists the models served", model)
	case errors.Is(err, embedder.ErrDimensions):
		return nil, apierr.Field("dimensions", "%s", strings.TrimPrefix(err.Error(), embedder.ErrDimensions.Error()+": "))
	case errors.Is(err, embedder.ErrRejected):
		return nil, apierr.Field("texts", "the embedding provider refused the texts (too long for the model?)")
	case errors.Is(err, embedder.ErrUnavailable):
		if model != "" {
			return nil, apierr.Unavailable("the provider of model %q is unavailable; retry later or omit the model to use the fallback order", model).Wrap(err)
		}
		return nil, apierr.Unavailable("no embedding provider is available; retry later").Wrap(err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, err
	default:
		return nil, apierr.Internal(err)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
