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
	return erasure.Consume(ctx, b, erasureConsumerName,
		[]string{erasure.EventIdentityErased, erasure.EventTenantErased}, s.logger,
		func(ctx context.Context, ev bus.Event) error {
			tenant, err := uuid.Parse(ev.Tenant)
			if err != nil {
				return nil
			}
			var data erasure.Erased
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				s.logger.WarnContext(ctx, "erasure event not understood; dropped", "event", ev.ID, "err", err)
				return nil
			}
			erasureID, err := uuid.Parse(data.ErasureID)
			if err != nil {
				s.logger.WarnContext(ctx, "erasure event names no erasure; dropped", "event", ev.ID)
				return nil
			}
			var identity *uuid.UUID
			if ev.Type == erasure.EventIdentityErased {
				id, err := uuid.Parse(data.IdentityID)
				if err != nil {
					s.logger.WarnContext(ctx, "identity.erased names no identity; dropped", "event", ev.ID)
					return nil
				}
				identity = &id
			}
			return s.Erase(ctx, tenant, erasureID, identity)
		})
}

// Erase deletes, in one transaction, the stored events about identity in tenant
// (its actions, the events about it and its data: memory texts, its external id)
// with their webhook deliveries and recorded attempts; for a whole tenant (identity
// nil) every event, delivery, attempt and endpoint of it. It reports the counts
// with erasure.progress in the same transaction. A rerun reports again: the
// identity service counts each service's first report only.
func (s *Service) Erase(ctx context.Context, tenant, erasureID uuid.UUID, identity *uuid.UUID) error {
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
				{Kind: "webhook_attempts", Count: attempts},
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
