package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/services/usage/store"
)

// ConsumerName is the durable JetStream consumer that meters domain events.
const ConsumerName = "usage-aggregator"

// EventRecorded is the event any service emits to meter something that has no
// domain event of its own (an API request, embedding tokens): its data is a usage
// event {"type", "quantity", "identity_id", "properties"}.
const EventRecorded = "usage.recorded"

// meters maps a domain event type to the usage type it is billed as.
var meters = map[string]string{
	"memory.created":      "memory.write",
	"memory.updated":      "memory.write",
	"memory.deleted":      "memory.delete",
	"memory.searched":     "memory.search",
	"identity.created":    "identity.active",
	"webhook.delivered":   "webhook.delivered",
	"embedding.completed": "embedding.tokens",
	EventRecorded:         "",
}

// consumerFilters are the subjects the consumer reads.
func consumerFilters() []string {
	out := make([]string, 0, len(meters))
	for t := range meters {
		out = append(out, bus.TypeFilter(t))
	}
	return out
}

// eventPayload holds the fields of domain events that decide billing.
type eventPayload struct {
	Type        string          `json:"type"`
	Quantity    *int64          `json:"quantity"`
	IdentityID  string          `json:"identity_id"`
	OwnerID     string          `json:"owner_id"`
	Tokens      *int64          `json:"tokens"`
	TotalTokens *int64          `json:"total_tokens"`
	Properties  json.RawMessage `json:"properties"`
	Model       string          `json:"model"`
	Provider    string          `json:"provider"`
}

// usageOf turns a domain event into the usage event it bills, or explains why it
// cannot.
func (s *Service) usageOf(ev bus.Event, now time.Time) (store.Event, error) {
	tenant, err := uuid.Parse(ev.Tenant)
	if err != nil {
		return store.Event{}, err
	}
	var data eventPayload
	if len(ev.Data) > 0 && ev.Data[0] == '{' {
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			return store.Event{}, fmt.Errorf("decode %s data: %w", ev.Type, err)
		}
	}
	raw := RawEvent{ID: ev.ID, Source: ev.Source, Type: meters[ev.Type], Time: ev.Time, Quantity: data.Quantity}
	switch ev.Type {
	case EventRecorded:
		raw.Type = data.Type
		raw.Properties = data.Properties
	case "embedding.completed":
		raw.Quantity = data.Tokens
		if data.TotalTokens != nil {
			raw.Quantity = data.TotalTokens
		}
		raw.Properties, _ = json.Marshal(map[string]string{"model": data.Model, "provider": data.Provider})
	default:
		raw.Quantity = nil
	}
	raw.IdentityID = data.IdentityID
	if raw.IdentityID == "" {
		raw.IdentityID = data.OwnerID
	}
	if raw.IdentityID == "" && ev.Type == "identity.created" {
		raw.IdentityID = ev.Subject
	}
	if id, err := uuid.Parse(raw.IdentityID); err != nil {
		raw.IdentityID = ""
	} else {
		raw.IdentityID = id.String()
	}
	// Events replayed from the stream may be older than the late window; they were
	// metered when they were new, so refusing them is right.
	out, verr := s.validate(tenant, raw, "", now)
	if verr != nil {
		return store.Event{}, verr
	}
	return out, nil
}

// consumer is the loop that meters domain events from the bus.
type consumer struct {
	svc    *Service
	bus    *bus.Bus
	logger *slog.Logger
	batch  int
	events prometheus.Counter
}

// run fetches batches and stores each in one transaction, acknowledging the batch
// afterwards. A batch that fails to store is redelivered; events already stored are
// deduplicated on their id, so redelivery never counts twice.
func (c *consumer) run(ctx context.Context) error {
	var cons jetstream.Consumer
	for {
		var err error
		cons, err = c.bus.Consumer(ctx, ConsumerName, consumerFilters(), func(cfg *jetstream.ConsumerConfig) {
			cfg.MaxAckPending = 50000
			cfg.AckWait = 30 * time.Second
			cfg.BackOff = nil
		})
		if err == nil {
			break
		}
		c.logger.WarnContext(ctx, "usage consumer not ready; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	for ctx.Err() == nil {
		b, err := cons.FetchNoWait(c.batch)
		if err == nil {
			var n int
			n, err = c.handle(ctx, b)
			if n == 0 && err == nil {
				err = errIdle
			}
		}
		if err != nil {
			delay := 200 * time.Millisecond
			if !errors.Is(err, errIdle) {
				c.logger.WarnContext(ctx, "usage consumer batch failed", "err", err)
				delay = time.Second
			}
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
		}
	}
	return ctx.Err()
}

var errIdle = errors.New("idle")

func (c *consumer) handle(ctx context.Context, b jetstream.MessageBatch) (int, error) {
	var (
		msgs   []jetstream.Msg
		events []store.Event
	)
	now := c.svc.now()
	for msg := range b.Messages() {
		msgs = append(msgs, msg)
		ev, err := bus.ParseCloudEvent(msg.Data())
		if err == nil {
			var u store.Event
			if u, err = c.svc.usageOf(ev, now); err == nil {
				events = append(events, u)
				continue
			}
		}
		c.logger.WarnContext(ctx, "event not metered", "subject", msg.Subject(), "err", err)
	}
	if err := b.Error(); err != nil && len(msgs) == 0 {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if len(events) > 0 {
		if _, err := c.svc.store.Ingest(ctx, events); err != nil {
			for _, m := range msgs {
				_ = m.Nak()
			}
			return len(msgs), err
		}
		c.events.Add(float64(len(events)))
		if c.svc.quotas != nil {
			seen := map[uuid.UUID]bool{}
			for _, e := range events {
				if !seen[e.Tenant] {
					seen[e.Tenant] = true
					c.svc.summaries.invalidate(e.Tenant.String())
					c.svc.quotas.Touch(ctx, e.Tenant)
				}
			}
		}
	}
	// Explicit acks, not AckAll: with several pullers, acking the end of one batch
	// must not acknowledge another puller's batch still being stored. The last ack
	// waits for the server, so a lost connection shows up as a batch error.
	for _, m := range msgs[:len(msgs)-1] {
		_ = m.Ack()
	}
	if err := msgs[len(msgs)-1].DoubleAck(ctx); err != nil {
		return len(msgs), fmt.Errorf("ack usage batch: %w", err)
	}
	return len(msgs), nil
}
