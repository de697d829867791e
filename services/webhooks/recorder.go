package webhooks

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/services/webhooks/store"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

// byTenant groups events by tenant, keeping their order.
func byTenant(evs []bus.Event) (map[uuid.UUID][]bus.Event, []uuid.UUID, error) {
	groups := map[uuid.UUID][]bus.Event{}
	var order []uuid.UUID
	for _, ev := range evs {
		t, err := uuid.Parse(ev.Tenant)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: tenant %q", errPermanent, ev.Tenant)
		}
		if _, ok := groups[t]; !ok {
			order = append(order, t)
		}
		groups[t] = append(groups[t], ev)
	}
	return groups, order, nil
}

// recordEvents stores bus events, once each: a redelivered event changes nothing.
func (s *Service) recordEvents(ctx context.Context, evs []bus.Event) error {
	groups, order, err := byTenant(evs)
	if err != nil {
		return err
	}
	for _, tenant := range order {
		err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			for _, ev := range groups[tenant] {
				if err := s.recordEvent(ctx, tx, tenant, ev); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			// A partition dropped by another replica's retention is recreated on
			// the retry.
			s.forgetPartitions()
			return err
		}
	}
	return nil
}

func (s *Service) recordEvent(ctx context.Context, tx *store.Tx, tenant uuid.UUID, ev bus.Event) error {
	id, err := uuid.Parse(ev.ID)
	if err != nil {
		return fmt.Errorf("%w: id %q", errPermanent, ev.ID)
	}
	// The identity is the event's actor. Events without one that are about an
	// identity (a sign-in, which has no principal yet; identity changes made by
	// the system) are filed under that identity, so listing by identity finds
	// them.
	var identity *uuid.UUID
	if u, err := uuid.Parse(ev.ActorID); err == nil {
		identity = &u
	} else if ev.ActorID == "" && (strings.HasPrefix(ev.Type, "identity.") || strings.HasPrefix(ev.Type, "auth.")) {
		if u, err := uuid.Parse(ev.Subject); err == nil {
			identity = &u
		}
	}
	var data []byte
	if len(ev.Data) > 0 {
		data = ev.Data
	}
	if err := s.ensurePartition(ctx, tx, store.TableEvents, ev.Time); err != nil {
		return err
	}
	_, err = tx.InsertEvent(ctx, sqlc.InsertEventParams{
		ID: id, TenantID: tenant, Type: ev.Type, Source: ev.Source, Subject: ev.Subject,
		IdentityID: identity, RequestID: ev.RequestID, Test: ev.Type == "webhook.test",
		EventTime: ev.Time, Data: data,
	})
	return err
}
