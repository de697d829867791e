package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	"github.com/manushya-ai/manushya/services/webhooks/store"
)

// Source is the CloudEvents source of the events this service emits.
const Source = "/manushya/webhooks"

// Service is the domain logic shared by the gRPC servers and the workers.
type Service struct {
	cfg    Config
	store  *store.Store
	sealer Sealer
	logger *slog.Logger
	now    func() time.Time

	partsMu sync.Mutex
	parts   map[string]bool // "<table>_<yyyymmdd>" partitions known to exist

	policy    addressPolicy
	bus       *bus.Bus
	deliverer *deliverer
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// tenantOf returns the tenant of the authenticated caller.
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

// parseID parses a request id already checked by protovalidate; the error still names
// the field for requests that bypass validation.
func parseID(field, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, apierr.Field(field, "must be a UUID")
	}
	return id, nil
}

// ensurePartition creates the day partition of table holding t, once per process.
func (s *Service) ensurePartition(ctx context.Context, tx *store.Tx, table string, t time.Time) error {
	day := store.Day(t)
	key := table + day.Time.Format("_20060102")
	s.partsMu.Lock()
	known := s.parts[key]
	s.partsMu.Unlock()
	if known {
		return nil
	}
	if err := tx.EnsureDayPartition(ctx, store.DayPartition(table, t)); err != nil {
		return fmt.Errorf("ensure partition %s: %w", key, err)
	}
	s.partsMu.Lock()
	s.parts[key] = true
	s.partsMu.Unlock()
	return nil
}

// forgetPartitions drops the cache after retention removed partitions.
func (s *Service) forgetPartitions() {
	s.partsMu.Lock()
	s.parts = map[string]bool{}
	s.partsMu.Unlock()
}

// deliveryBody is the JSON POSTed to receivers: the Standard Webhooks payload
// (type, timestamp, data) plus the event's id, subject and tenant.
type deliveryBody struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
	EventID   string          `json:"event_id"`
	Subject   string          `json:"subject,omitempty"`
	TenantID  string          `json:"tenant_id"`
	Test      bool            `json:"test,omitempty"`
}

func marshalBody(b deliveryBody) ([]byte, error) {
	if len(b.Data) == 0 {
		b.Data = json.RawMessage("{}")
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("marshal delivery body: %w", err)
	}
	return out, nil
}
