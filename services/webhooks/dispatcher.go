package webhooks

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/services/webhooks/store"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

// Delivery statuses as stored (the WebhookDeliveryStatus enum numbers).
const (
	statusPending   int16 = 1
	statusSucceeded int16 = 2
	statusFailed    int16 = 3
	statusRetrying  int16 = 4
	statusDead      int16 = 5
)

// dispatchEvents turns bus events into a delivery for every enabled endpoint of
// their tenant that subscribes to their type, each queued for an immediate first
// attempt. The unique (webhook, event) index makes a redelivered event a no-op.
func (s *Service) dispatchEvents(ctx context.Context, evs []bus.Event) error {
	groups, order, err := byTenant(evs)
	if err != nil {
		return err
	}
	for _, tenant := range order {
		if err := s.dispatchTenant(ctx, tenant, groups[tenant]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) dispatchTenant(ctx context.Context, tenant uuid.UUID, evs []bus.Event) error {
	var rows []sqlc.CreateDeliveriesRow
	var fresh map[uuid.UUID]*loaded
	now := s.now()
	// Leased at once and handed straight to the endpoints' queues after commit, so
	// first attempts do not wait for the scheduler.
	leaseUntil := now.Add(s.deliverer.leaseFor())
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		byType := map[string][]sqlc.WebhooksEndpoint{}
		p := sqlc.CreateDeliveriesParams{TenantID: tenant, Now: now, LeasedUntil: leaseUntil, LeasedWebhooks: []uuid.UUID{}}
		seen := map[uuid.UUID]bool{}
		fresh = map[uuid.UUID]*loaded{}
		for _, ev := range evs {
			eventID, err := uuid.Parse(ev.ID)
			if err != nil {
				return fmt.Errorf("%w: id %q", errPermanent, ev.ID)
			}
			eps, ok := byType[ev.Type]
			if !ok {
				if eps, err = tx.MatchingEndpoints(ctx, patternsFor(ev.Type)); err != nil {
					return fmt.Errorf("match endpoints: %w", err)
				}
				byType[ev.Type] = eps
			}
			if len(eps) == 0 {
				continue
			}
			body, err := marshalBody(deliveryBody{
				Type: ev.Type, Timestamp: ev.Time, Data: ev.Data, EventID: ev.ID, Subject: ev.Subject,
				TenantID: ev.Tenant, Test: ev.Type == "webhook.test",
			})
			if err != nil {
				return fmt.Errorf("%w: %w", errPermanent, err)
			}
			for i := range eps {
				ep := eps[i]
				// Endpoints with a full queue are left to the scheduler.
				if !seen[ep.ID] {
					seen[ep.ID] = true
					if s.deliverer.hasRoom(ep.ID) {
						p.LeasedWebhooks = append(p.LeasedWebhooks, ep.ID)
					}
				}
				id := newID()
				fresh[id] = &loaded{
					dl: sqlc.WebhooksDelivery{
						ID: id, TenantID: tenant, WebhookID: ep.ID, EventID: eventID, EventType: ev.Type,
						EventTime: ev.Time, Body: body, Status: statusPending, NextAttemptTime: &now,
						CreateTime: now, UpdateTime: now,
					},
					ep: ep,
				}
				p.Ids = append(p.Ids, id)
				p.WebhookIds = append(p.WebhookIds, ep.ID)
				p.EventIds = append(p.EventIds, eventID)
				p.EventTypes = append(p.EventTypes, ev.Type)
				p.EventTimes = append(p.EventTimes, ev.Time)
				p.Bodies = append(p.Bodies, body)
			}
		}
		if len(p.Ids) == 0 {
			rows = nil
			return nil
		}
		// Redelivered events find their (webhook, event) pair taken and are skipped.
		var err error
		if rows, err = tx.CreateDeliveries(ctx, p); err != nil {
			return fmt.Errorf("create deliveries: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var back []uuid.UUID
	for _, r := range rows {
		if r.Leased && !s.deliverer.handOff(job{deliveryID: r.DeliveryID, tenantID: tenant, webhookID: r.WebhookID, seq: r.Seq, fresh: fresh[r.DeliveryID]}) {
			back = append(back, r.DeliveryID)
		}
	}
	if len(back) > 0 {
		// Full queues: the scheduler takes these when there is room.
		if err := s.store.Global().ReleaseLeases(context.WithoutCancel(ctx), back); err != nil {
			s.logger.WarnContext(ctx, "release leases", "count", len(back), "err", err)
		}
	}
	return nil
}
