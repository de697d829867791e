package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/bus"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
)

// ConsumerAuditRecords is the durable consumer of the audit stream: the records
// of mutating requests, authentication events and authorization decisions that
// every process publishes (pkg/audit).
const ConsumerAuditRecords = "audit-records"

// consumeAuditRecords appends the audit stream's records to the tenants' chains
// until ctx ends, restarting the consumer if it stops.
func (s *Service) consumeAuditRecords(ctx context.Context, b *bus.Bus, workers int) error {
	for {
		err := s.consumeAuditRecordsOnce(ctx, b, workers)
		if ctx.Err() != nil {
			return nil
		}
		s.logger.WarnContext(ctx, "consumer stopped, restarting", "consumer", ConsumerAuditRecords, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(nakDelay):
		}
	}
}

func (s *Service) consumeAuditRecordsOnce(ctx context.Context, b *bus.Bus, workers int) error {
	if _, err := b.EnsureAuditStream(ctx); err != nil {
		return err
	}
	cons, err := b.AuditConsumer(ctx, ConsumerAuditRecords, func(c *jetstream.ConsumerConfig) {
		c.MaxAckPending = max(c.MaxAckPending, 16*maxBatch)
	})
	if err != nil {
		return err
	}
	return runLanes(ctx, cons, ConsumerAuditRecords, workers, s.handleAuditRecords)
}

// handleAuditRecords appends one lane's batch: one transaction per tenant, acked
// after it commits. A record that can never be appended (not a valid record) is
// terminated; a tenant whose transaction fails is redelivered later, and records
// it did append before are then skipped by id.
func (s *Service) handleAuditRecords(ctx context.Context, msgs []jetstream.Msg) {
	byTenant := map[uuid.UUID][]AuditRecord{}
	msgsOf := map[uuid.UUID][]jetstream.Msg{}
	var order []uuid.UUID
	for _, m := range msgs {
		rec, err := parseAuditRecord(m.Data())
		if err != nil {
			s.logger.ErrorContext(ctx, "dropping audit record", "consumer", ConsumerAuditRecords, "subject", m.Subject(), "err", err)
			_ = m.Term()
			continue
		}
		if _, ok := byTenant[rec.TenantID]; !ok {
			order = append(order, rec.TenantID)
		}
		byTenant[rec.TenantID] = append(byTenant[rec.TenantID], rec)
		msgsOf[rec.TenantID] = append(msgsOf[rec.TenantID], m)
	}
	for _, tenant := range order {
		recs, ms := byTenant[tenant], msgsOf[tenant]
		err := s.AppendAudit(ctx, tenant, recs...)
		if err != nil && len(recs) > 1 && ctx.Err() == nil {
			// One record the log refuses must not hold back the others: append
			// them one by one (those already appended are skipped by id).
			for i := range recs {
				s.settleAuditRecord(ctx, tenant, ms[i], s.AppendAudit(ctx, tenant, recs[i]))
			}
			continue
		}
		for _, m := range ms {
			s.settleAuditRecord(ctx, tenant, m, err)
		}
	}
}

// settleAuditRecord acks a record once appended, or has the bus redeliver it
// later (after DefaultMaxDeliver attempts the bus gives up; each failure is logged).
func (s *Service) settleAuditRecord(ctx context.Context, tenant uuid.UUID, m jetstream.Msg, err error) {
	switch {
	case err == nil:
		if aerr := m.Ack(); aerr != nil {
			s.logger.WarnContext(ctx, "ack failed", "consumer", ConsumerAuditRecords, "err", aerr)
		}
	case ctx.Err() != nil:
		// Shutting down: the bus redelivers after the ack wait.
	default:
		s.logger.WarnContext(ctx, "audit record not appended, redelivering", "tenant_id", tenant, "subject", m.Subject(), "err", err)
		_ = m.NakWithDelay(nakDelay)
	}
}

// parseAuditRecord decodes and checks one record of the audit stream.
func parseAuditRecord(data []byte) (AuditRecord, error) {
	var r audit.Record
	if err := json.Unmarshal(data, &r); err != nil {
		return AuditRecord{}, errors.Join(audit.ErrInvalidRecord, err)
	}
	if err := r.Validate(); err != nil {
		return AuditRecord{}, err
	}
	// Validate checked both.
	id, tenant := uuid.MustParse(r.ID), uuid.MustParse(r.TenantID)
	return AuditRecord{
		ID: id, TenantID: tenant, ActorIdentityID: r.Actor.IdentityID, ActorKind: actorKindOf(r.Actor.Kind),
		ActorAPIKeyID: r.Actor.APIKeyID, ActorSessionID: r.Actor.SessionID, ActorExternalID: r.Actor.ExternalID,
		Action: r.Action, ResourceType: r.ResourceType, ResourceID: r.ResourceID, Before: r.Before, After: r.After,
		RequestID: r.RequestID, ClientIP: r.ClientIP, UserAgent: r.UserAgent, Result: resultOf(r.Result),
		ErrorReason: r.ErrorReason, Time: r.Time,
	}, nil
}

func actorKindOf(kind string) eventsv1.AuditActorKind {
	switch kind {
	case audit.KindUser:
		return eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_USER
	case audit.KindAgent:
		return eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_AGENT
	case audit.KindService:
		return eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_SERVICE
	case audit.KindOperator:
		return eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_OPERATOR
	case audit.KindSystem:
		return eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_SYSTEM
	}
	return eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_UNSPECIFIED
}

func resultOf(r audit.Result) eventsv1.AuditResult {
	switch r {
	case audit.ResultDenied:
		return eventsv1.AuditResult_AUDIT_RESULT_DENIED
	case audit.ResultError:
		return eventsv1.AuditResult_AUDIT_RESULT_ERROR
	}
	return eventsv1.AuditResult_AUDIT_RESULT_SUCCESS
}
