// Package erasure is the contract between the services that take part in an
// erasure (GDPR right to erasure): the events on the bus, their data, the set of
// services that hold data about an identity, and the durable consumer loop they
// each run.
//
// The identity service erases its own rows, writes a receipt and announces
// identity.erased (data: Erased). Every service in Services removes what it holds
// about the identity and reports with erasure.progress (data: Progress) through
// its own outbox. The identity service adds each report to the receipt; when none
// is pending, the receipt is COMPLETED and identity.erasure.completed follows.
// Tenant erasure is the same with tenant.erased and tenant.erasure.completed.
package erasure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/manushya-ai/manushya/pkg/bus"
)

// Event types. Their data names the subject by id only: no personal data.
const (
	// EventIdentityErased announces that an identity is being erased (data: Erased).
	EventIdentityErased = "identity.erased"
	// EventTenantErased announces that a whole tenant is being erased (data: Erased).
	EventTenantErased = "tenant.erased"
	// EventProgress is a service's report of what it removed (data: Progress).
	EventProgress = "erasure.progress"
	// EventIdentityCompleted says every service removed its part (data: Completed).
	EventIdentityCompleted = "identity.erasure.completed"
	// EventTenantCompleted is EventIdentityCompleted for a tenant.
	EventTenantCompleted = "tenant.erasure.completed"
	// EventIdentityPurged says an identity was purged outside an erasure
	// (DeleteIdentity with hard, the retention sweeper), data: Purged. It is not
	// an erasure: services delete the identity's data that has no life without
	// it (the memory service its memories) and report nothing.
	EventIdentityPurged = "identity.purged"
)

// Service names as they appear on receipts.
const (
	ServiceIdentity = "identity"
	ServiceKeyring  = "keyring"
	ServiceMemory   = "memory"
	ServiceUsage    = "usage"
	ServiceWebhooks = "webhooks"
)

// Services are the services that hold data about identities and must report
// before an erasure completes, besides the identity service itself (which erases
// its rows in the request) and the keyring (whose keys it destroys right after).
// A service added here must consume the erased events and report progress.
var Services = []string{ServiceMemory, ServiceUsage, ServiceWebhooks}

// Erased is the data of identity.erased and tenant.erased.
type Erased struct {
	ErasureID  string `json:"erasure_id"`
	IdentityID string `json:"identity_id,omitempty"`
	TenantID   string `json:"tenant_id,omitempty"`
}

// Purged is the data of identity.purged: the id only, the identity being gone.
type Purged struct {
	IdentityID string `json:"identity_id"`
}

// Count is how many records of one kind a service removed.
type Count struct {
	Kind  string `json:"kind"`
	Count int64  `json:"count"`
}

// Progress is the data of erasure.progress.
type Progress struct {
	ErasureID string  `json:"erasure_id"`
	Service   string  `json:"service"`
	Counts    []Count `json:"counts"`
}

// Completed is the data of identity.erasure.completed and tenant.erasure.completed.
type Completed struct {
	ErasureID string `json:"erasure_id"`
	SubjectID string `json:"subject_id"`
}

// ProgressEvent is the report of service (whose events carry source) about
// erasure erasureID of tenant.
func ProgressEvent(tenant, source, service, erasureID string, counts []Count) (bus.Event, error) {
	if counts == nil {
		counts = []Count{}
	}
	return bus.NewEvent(tenant, EventProgress, source, erasureID, Progress{ErasureID: erasureID, Service: service, Counts: counts})
}

// Consume runs a durable consumer of the given event types until ctx ends,
// handing each event to handle one at a time. An event handled without error is
// acknowledged; a failure is redelivered after a pause, so handle must be
// idempotent (every erasure step is: deleting what is already gone removes
// nothing, and a report is recorded once). An event that cannot be parsed is
// acknowledged and logged: it would never parse.
func Consume(ctx context.Context, b *bus.Bus, durable string, types []string, logger *slog.Logger, handle func(context.Context, bus.Event) error) error {
	filters := make([]string, len(types))
	for i, t := range types {
		filters[i] = bus.TypeFilter(t)
	}
	var cons jetstream.Consumer
	for {
		var err error
		cons, err = b.Consumer(ctx, durable, filters, func(cfg *jetstream.ConsumerConfig) {
			// Erasing 100,000 memories takes a while; the handler keeps the
			// message alive with InProgress between batches. An erasure is never
			// given up: it is retried until it succeeds.
			cfg.AckWait = time.Minute
			cfg.BackOff = nil
			cfg.MaxDeliver = -1
		})
		if err == nil {
			break
		}
		logger.WarnContext(ctx, "erasure consumer not ready; retrying", "consumer", durable, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	for ctx.Err() == nil {
		consumeOne(ctx, cons, durable, logger, handle)
	}
	return nil
}

// consumeOne waits up to a few seconds for the next event and handles it.
func consumeOne(ctx context.Context, cons jetstream.Consumer, durable string, logger *slog.Logger, handle func(context.Context, bus.Event) error) {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	batch, err := cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		if ctx.Err() == nil {
			logger.WarnContext(ctx, "erasure consumer fetch failed", "consumer", durable, "err", err)
			pause(ctx, time.Second)
		}
		return
	}
	for msg := range batch.Messages() {
		ev, err := bus.ParseCloudEvent(msg.Data())
		if err != nil {
			logger.WarnContext(ctx, "erasure event not parsed; dropped", "consumer", durable, "subject", msg.Subject(), "err", err)
			_ = msg.Ack()
			continue
		}
		if err := handle(withKeepAlive(ctx, msg), ev); err != nil {
			if ctx.Err() != nil {
				return
			}
			logger.WarnContext(ctx, "erasure step failed; will retry", "consumer", durable, "type", ev.Type, "subject", ev.Subject, "err", err)
			_ = msg.NakWithDelay(2 * time.Second)
			continue
		}
		if err := msg.DoubleAck(ctx); err != nil && ctx.Err() == nil {
			logger.WarnContext(ctx, "erasure event not acknowledged", "consumer", durable, "err", err)
		}
	}
}

type keepAliveKey struct{}

func withKeepAlive(ctx context.Context, msg jetstream.Msg) context.Context {
	return context.WithValue(ctx, keepAliveKey{}, msg)
}

// KeepAlive tells the bus that the event being handled in ctx is still being
// worked on, so a long erasure is not redelivered to another process meanwhile.
// Outside Consume it does nothing.
func KeepAlive(ctx context.Context) {
	if msg, ok := ctx.Value(keepAliveKey{}).(jetstream.Msg); ok {
		_ = msg.InProgress()
	}
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Request is one erasure as a data-holding service handles it: the tenant, the
// erasure's id (for the report) and the identity, nil when the whole tenant goes.
type Request struct {
	Tenant    uuid.UUID
	ErasureID uuid.UUID
	Identity  *uuid.UUID
}

// ConsumeErased runs Consume on identity.erased and tenant.erased and hands each
// erasure to erase, decoded. An event that names no valid tenant, erasure or
// identity is logged and dropped: it would never decode.
func ConsumeErased(ctx context.Context, b *bus.Bus, durable string, logger *slog.Logger, erase func(context.Context, Request) error) error {
	return Consume(ctx, b, durable, []string{EventIdentityErased, EventTenantErased}, logger,
		func(ctx context.Context, ev bus.Event) error {
			req, err := decodeErased(ev)
			if err != nil {
				logger.WarnContext(ctx, "erasure event dropped", "consumer", durable, "event", ev.ID, "type", ev.Type, "err", err)
				return nil
			}
			return erase(ctx, req)
		})
}

// decodeErased reads the erasure an identity.erased or tenant.erased event asks for.
func decodeErased(ev bus.Event) (Request, error) {
	tenant, err := uuid.Parse(ev.Tenant)
	if err != nil {
		return Request{}, fmt.Errorf("tenant %q: %w", ev.Tenant, err)
	}
	var data Erased
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		return Request{}, fmt.Errorf("data not understood: %w", err)
	}
	erasureID, err := uuid.Parse(data.ErasureID)
	if err != nil {
		return Request{}, errors.New("names no erasure")
	}
	req := Request{Tenant: tenant, ErasureID: erasureID}
	if ev.Type == EventIdentityErased {
		id, err := uuid.Parse(data.IdentityID)
		if err != nil {
			return Request{}, errors.New("names no identity")
		}
		req.Identity = &id
	}
	return req, nil
}
