package usage

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	"github.com/manushya-ai/manushya/pkg/ratelimit"
	"github.com/manushya-ai/manushya/services/usage/store"
)

// EventSource is the CloudEvents source of this service's events.
const EventSource = "manushya/usage"

// Usage types every installation knows; Config.Types registers more.
var builtinTypes = []string{
	"api.request", "memory.write", "memory.read", "memory.search", "memory.delete",
	"embedding.tokens", "embedding.request", "webhook.delivered", "identity.active", "identity.created",
}

// Windows of acceptance for event times.
const (
	// LateWindow is how long after it happened an event is still accepted.
	LateWindow = 35 * 24 * time.Hour
	// FutureSkew is how far ahead of the server's clock an event may be dated.
	FutureSkew = 5 * time.Minute
)

var (
	typePattern   = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	sourcePattern = regexp.MustCompile(`^[A-Za-z0-9._/-]{1,128}$`)
	// uuidPattern is the form protovalidate's uuid rule accepts; uuid.Parse alone
	// also takes braces, "urn:uuid:" and hyphenless forms.
	uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// Service holds the usage service's domain logic; the gRPC handlers translate to
// and from it.
type Service struct {
	store   *store.Store
	limiter *ratelimit.Limiter
	logger  *slog.Logger
	types   map[string]bool
	now     func() time.Time
	quotas  *QuotaChecker
	// summaries caches GetUsageSummary answers (Config.SummaryCacheTTL).
	summaries *summaryCache
}

// tenantOf returns the caller's tenant.
func tenantOf(ctx context.Context) (uuid.UUID, *auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return uuid.Nil, nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING, "no credential")
	}
	id, err := uuid.Parse(p.TenantID)
	if err != nil {
		return uuid.Nil, nil, apierr.Internal(fmt.Errorf("principal has tenant %q: %w", p.TenantID, err))
	}
	return id, p, nil
}

// RawEvent is a usage event as received, before validation.
type RawEvent struct {
	ID, Source, Type string
	Quantity         *int64 // nil: 1
	IdentityID       string
	Time             time.Time // zero: now
	Properties       []byte
}

// validate turns a received event into a storable one, or says which field is
// wrong and why; field names are prefixed with prefix ("events[3].").
//
// It is the only check of an event's fields: UsageEvent has no protovalidate
// constraints, which would refuse a whole IngestUsageEvents batch for one bad
// event, so every rule lives here and is reported per event.
func (s *Service) validate(tenant uuid.UUID, e RawEvent, prefix string, now time.Time) (store.Event, *apierr.Error) {
	out := store.Event{Tenant: tenant, ID: e.ID, Source: e.Source, Type: e.Type, Quantity: 1, Time: e.Time, Properties: e.Properties}
	var vs []apierr.Violation
	bad := func(field, why string) { vs = append(vs, apierr.Violation{Field: prefix + field, Description: why}) }
	if out.ID == "" {
		out.ID = uuid.Must(uuid.NewV7()).String()
	} else if !idPattern.MatchString(out.ID) {
		bad("id", "must be 1 to 128 letters, digits, '.', '_', ':' or '-'")
	}
	if out.Source == "" {
		out.Source = "api"
	} else if !sourcePattern.MatchString(out.Source) {
		bad("source", "must be 1 to 128 letters, digits, '.', '_', '/' or '-'")
	}
	switch {
	case !typePattern.MatchString(e.Type) || len(e.Type) > 128:
		bad("type", "must be lowercase dotted words such as \"memory.write\"")
	case !s.types[e.Type]:
		bad("type", fmt.Sprintf("unknown usage type %q: register it in usage.types", e.Type))
	}
	if e.Quantity != nil {
		switch q := *e.Quantity; {
		case q < 0:
			bad("quantity", "must not be negative")
		case q > 1_000_000_000_000_000:
			bad("quantity", "must be at most 10^15")
		default:
			out.Quantity = q
		}
	}
	if e.IdentityID != "" {
		id, err := uuid.Parse(e.IdentityID)
		if err != nil || !uuidPattern.MatchString(e.IdentityID) {
			bad("identity_id", "must be a UUID such as \"123e4567-e89b-12d3-a456-426614174000\"")
		}
		out.IdentityID = id
	}
	switch {
	case out.Time.IsZero():
		out.Time = now
	case out.Time.After(now.Add(FutureSkew)):
		bad("event_time", fmt.Sprintf("is in the future beyond the allowed clock skew of %s", FutureSkew))
	case out.Time.Before(now.Add(-LateWindow)):
		bad("event_time", "is more than 35 days old; late events are accepted for 35 days")
	}
	out.Time = out.Time.UTC()
	if len(vs) > 0 {
		return out, apierr.InvalidArgument(vs...)
	}
	return out, nil
}

const codesResourceExhausted = codes.ResourceExhausted

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
