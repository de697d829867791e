package webhooks

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/erasure"
	"github.com/manushya-ai/manushya/services/webhooks/store"
)

// erasureConsumerName is the durable consumer of identity.erased and tenant.erased.
const erasureConsumerName = "webhooks-erasure"

// consumeErasures removes the stored events and webhook deliveries of erased
// identities and tenants until ctx ends (see pkg/erasure).
func (s *Service) consumeErasures(ctx context.Context, b *bus.Bus) error {
	return erasure.ConsumeErased(ctx, b, erasureConsumerName, s.logger, func(ctx context.Context, r erasure.Request) error {
		// The stream's copies go first: a failed scrub is retried with the
		// whole erasure, and the report below counts it.
		scrubbed, err := b.Scrub(ctx, r.Tenant.String(), erasedEvent(r.Identity), func() { erasure.KeepAlive(ctx) })
		if err != nil {
			return fmt.Errorf("scrub the event stream (erasure %s): %w", r.ErasureID, err)
		}
		return s.Erase(ctx, r.Tenant, r.ErasureID, r.Identity, int64(scrubbed))
	})
}

// erasureRecords are the erasure's own events: they name the subject by id only,
// the other services still need them, and they stay as the record of the erasure.
var erasureRecords = map[string]bool{
	erasure.EventIdentityErased: true, erasure.EventIdentityCompleted: true, erasure.EventProgress: true,
	erasure.EventTenantErased: true, erasure.EventTenantCompleted: true,
}

// erasedEvent matches the stream messages an erasure removes: for a tenant, all
// but the erasure's own; for an identity, those it did or that are about it or its
// data, by the same reading as DeleteIdentityEvents (actor, subject, or the
// identity_id, owner_id or id of the data).
func erasedEvent(identity *uuid.UUID) func(bus.Event) bool {
	return func(ev bus.Event) bool {
		if erasureRecords[ev.Type] {
			return false
		}
		if identity == nil {
			return true
		}
		id := identity.String()
		if ev.ActorID == id || ev.Subject == id {
			return true
		}
		var data struct {
			IdentityID string `json:"identity_id"`
			OwnerID    string `json:"owner_id"`
			ID         string `json:"id"`
		}
		if json.Unmarshal(ev.Data, &data) != nil {
			return false
		}
		return data.IdentityID == id || data.OwnerID == id || data.ID == id
	}
}

// Erase deletes, in one transaction, the stored events about identity in tenant
// (its actions, the events about it and its data: memory texts, its external id)
// with their webhook deliveries and recorded attempts; for a whole tenant (identity
// nil) every event, delivery, attempt and endpoint of it. It reports the counts
// with erasure.progress in the same transaction, with scrubbed, the messages
// removed from the event stream before it. A rerun reports again: the identity
// service counts each service's first report only.
func (s *Service) Erase(ctx context.Context, tenant, erasureID uuid.UUID, identity *uuid.UUID, scrubbed int64) error {
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		var counts []erasure.Count
		if identity != nil {
			events, err := tx.DeleteIdentityEvents(ctx, *identity)
			if err != nil {
				return fmt.Errorf("delete events: %w", err)
			}
			var deliveries []uuid.UUID
			var attempts int64
			if len(events) > 0 {
				if deliveries, err = tx.DeleteEventDeliveries(ctx, events); err != nil {
					return fmt.Errorf("delete deliveries: %w", err)
				}
			}
			if len(deliveries) > 0 {
				if attempts, err = tx.DeleteDeliveryAttempts(ctx, deliveries); err != nil {
					return fmt.Errorf("delete attempts: %w", err)
				}
			}
			counts = []erasure.Count{
				{Kind: "events", Count: int64(len(events))}, {Kind: "webhook_deliveries", Count: int64(len(deliveries))},
				{Kind: "webhook_attempts", Count: attempts}, {Kind: "stream_events", Count: scrubbed},
			}
		} else {
			events, err := tx.DeleteTenantEvents(ctx, tenant)
			if err != nil {
				return fmt.Errorf("delete events: %w", err)
			}
			attempts, err := tx.DeleteTenantAttempts(ctx, tenant)
			if err != nil {
				return fmt.Errorf("delete attempts: %w", err)
			}
			deliveries, err := tx.DeleteTenantDeliveries(ctx, tenant)
			if err != nil {
				return fmt.Errorf("delete deliveries: %w", err)
			}
			endpoints, err := tx.DeleteTenantEndpoints(ctx, tenant)
			if err != nil {
				return fmt.Errorf("delete endpoints: %w", err)
			}
			counts = []erasure.Count{
				{Kind: "events", Count: events}, {Kind: "webhook_deliveries", Count: deliveries},
				{Kind: "webhook_attempts", Count: attempts}, {Kind: "webhook_endpoints", Count: endpoints},
				{Kind: "stream_events", Count: scrubbed},
			}
		}
		ev, err := erasure.ProgressEvent(tenant.String(), Source, erasure.ServiceWebhooks, erasureID.String(), counts)
		if err != nil {
			return err
		}
		return tx.Emit(ctx, ev)
	})
	if err != nil {
		return fmt.Errorf("erase events and deliveries (erasure %s): %w", erasureID, err)
	}
	return nil
}
