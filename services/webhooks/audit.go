package webhooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/bus"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	"github.com/manushya-ai/manushya/services/webhooks/store"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

// ConsumerAudit is the audit writer's durable consumer.
const ConsumerAudit = "audit-writer"

// AuditRecord is one thing to put in the audit log. Mutating requests,
// authentication events and authorization decisions of every process reach it
// from the audit stream (audit_requests.go); domain events through the audit
// writer consumer.
type AuditRecord struct {
	// ID becomes the entry's id; a record whose id is already in the log is
	// skipped, so redelivered records are appended once. Zero: a fresh id.
	ID              uuid.UUID
	TenantID        uuid.UUID
	SourceEventID   *uuid.UUID
	ActorIdentityID string
	ActorKind       eventsv1.AuditActorKind
	ActorAPIKeyID   string
	ActorSessionID  string
	ActorExternalID string
	Action          string
	ResourceType    string
	ResourceID      string
	Before, After   json.RawMessage
	RequestID       string
	ClientIP        string
	UserAgent       string
	Result          eventsv1.AuditResult
	ErrorReason     int32
	Time            time.Time
}

// canonicalEntry is what the hash covers: every field of the entry but the hash
// itself, in a fixed order, with JSON objects re-encoded with sorted keys.
type canonicalEntry struct {
	TenantID        string          `json:"tenant_id"`
	Sequence        int64           `json:"sequence"`
	ID              string          `json:"id"`
	SourceEventID   string          `json:"source_event_id"`
	ActorIdentityID string          `json:"actor_identity_id"`
	ActorKind       int16           `json:"actor_kind"`
	ActorAPIKeyID   string          `json:"actor_api_key_id"`
	ActorSessionID  string          `json:"actor_session_id"`
	ActorExternalID string          `json:"actor_external_id"`
	Action          string          `json:"action"`
	ResourceType    string          `json:"resource_type"`
	ResourceID      string          `json:"resource_id"`
	Before          json.RawMessage `json:"before"`
	After           json.RawMessage `json:"after"`
	RequestID       string          `json:"request_id"`
	ClientIP        string          `json:"client_ip"`
	UserAgent       string          `json:"user_agent"`
	Result          int16           `json:"result"`
	ErrorReason     int32           `json:"error_reason"`
	CreateTime      string          `json:"create_time"`
}

// canonicalJSON re-encodes a JSON value with sorted object keys ("null" for none),
// so the hash does not depend on how PostgreSQL's jsonb orders keys.
func canonicalJSON(raw []byte) (json.RawMessage, error) {
	if len(raw) == 0 {
		return json.RawMessage("null"), nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	out, err := json.Marshal(v)
	return out, err
}

// entryHash is sha256(prev_hash || canonical JSON of the entry), hex.
func entryHash(e sqlc.WebhooksAuditEntry) (string, error) {
	before, err := canonicalJSON(e.Before)
	if err != nil {
		return "", fmt.Errorf("audit entry %d before: %w", e.Sequence, err)
	}
	after, err := canonicalJSON(e.After)
	if err != nil {
		return "", fmt.Errorf("audit entry %d after: %w", e.Sequence, err)
	}
	c := canonicalEntry{
		TenantID: e.TenantID.String(), Sequence: e.Sequence, ID: e.ID.String(),
		ActorIdentityID: e.ActorIdentityID, ActorKind: e.ActorKind, ActorAPIKeyID: e.ActorApiKeyID,
		ActorSessionID: e.ActorSessionID, ActorExternalID: e.ActorExternalID, Action: e.Action,
		ResourceType: e.ResourceType, ResourceID: e.ResourceID, Before: before, After: after,
		RequestID: e.RequestID, ClientIP: e.ClientIp, UserAgent: e.UserAgent, Result: e.Result,
		ErrorReason: e.ErrorReason, CreateTime: e.CreateTime.UTC().Format(time.RFC3339Nano),
	}
	if e.SourceEventID != nil {
		c.SourceEventID = e.SourceEventID.String()
	}
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(e.PrevHash))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// appendAudit chains records onto the tenant's log inside tx; records already
// logged for their source event are skipped.
func (s *Service) appendAudit(ctx context.Context, tx *store.Tx, tenant uuid.UUID, recs []AuditRecord) error {
	head, err := tx.LockAuditHead(ctx, tenant)
	if err != nil {
		return fmt.Errorf("lock audit head: %w", err)
	}
	seq, prev := head.Sequence, head.Hash
	seen, err := recordedIDs(ctx, tx, tenant, recs)
	if err != nil {
		return err
	}
	appended := false
	for _, r := range recs {
		id := r.ID
		if id != uuid.Nil {
			if seen[id] {
				continue
			}
			seen[id] = true
		} else {
			id = newID()
		}
		if r.SourceEventID != nil {
			done, err := tx.AuditEventRecorded(ctx, sqlc.AuditEventRecordedParams{TenantID: tenant, SourceEventID: r.SourceEventID})
			if err != nil {
				return err
			}
			if done {
				continue
			}
		}
		seq++
		e := sqlc.WebhooksAuditEntry{
			TenantID: tenant, Sequence: seq, ID: id, SourceEventID: r.SourceEventID,
			ActorIdentityID: r.ActorIdentityID, ActorKind: int16(r.ActorKind), ActorApiKeyID: r.ActorAPIKeyID,
			ActorSessionID: r.ActorSessionID, ActorExternalID: r.ActorExternalID, Action: r.Action,
			ResourceType: r.ResourceType, ResourceID: r.ResourceID, Before: audit.Redact(r.Before), After: audit.Redact(r.After),
			RequestID: r.RequestID, ClientIp: r.ClientIP, UserAgent: r.UserAgent, Result: int16(r.Result),
			ErrorReason: r.ErrorReason, CreateTime: r.Time.UTC().Truncate(time.Microsecond), PrevHash: prev,
		}
		if e.Result == 0 {
			e.Result = int16(eventsv1.AuditResult_AUDIT_RESULT_SUCCESS)
		}
		if e.Hash, err = entryHash(e); err != nil {
			return err
		}
		if err := tx.InsertAuditEntry(ctx, sqlc.InsertAuditEntryParams(e)); err != nil {
			return fmt.Errorf("insert audit entry: %w", err)
		}
		prev = e.Hash
		appended = true
	}
	if !appended {
		return nil
	}
	return tx.SetAuditHead(ctx, sqlc.SetAuditHeadParams{TenantID: tenant, Sequence: seq, Hash: prev})
}

// recordedIDs returns which of the records' ids the tenant's log already holds.
func recordedIDs(ctx context.Context, tx *store.Tx, tenant uuid.UUID, recs []AuditRecord) (map[uuid.UUID]bool, error) {
	seen := map[uuid.UUID]bool{}
	var ids []uuid.UUID
	for _, r := range recs {
		if r.ID != uuid.Nil {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		return seen, nil
	}
	found, err := tx.AuditEntriesRecorded(ctx, sqlc.AuditEntriesRecordedParams{TenantID: tenant, Ids: ids})
	if err != nil {
		return nil, fmt.Errorf("look up recorded audit entries: %w", err)
	}
	for _, id := range found {
		seen[id] = true
	}
	return seen, nil
}

// AppendAudit records entries for one tenant in their own transaction.
func (s *Service) AppendAudit(ctx context.Context, tenant uuid.UUID, recs ...AuditRecord) error {
	return s.store.InTenant(ctx, tenant, func(tx *store.Tx) error { return s.appendAudit(ctx, tx, tenant, recs) })
}

// notAudited are event types that record no change to anything: test events and
// metering sums (usage.recorded, published every few seconds per identity and
// route). They stay in the event store and reach webhooks, but would bury the
// audit log's changes under noise.
var notAudited = map[string]bool{"webhook.test": true, "usage.recorded": true}

// auditEvents is the audit writer: every domain event becomes an entry, except
// the notAudited types.
func (s *Service) auditEvents(ctx context.Context, evs []bus.Event) error {
	groups, order, err := byTenant(evs)
	if err != nil {
		return err
	}
	for _, tenant := range order {
		var recs []AuditRecord
		for _, ev := range groups[tenant] {
			if notAudited[ev.Type] {
				continue
			}
			id, err := uuid.Parse(ev.ID)
			if err != nil {
				return fmt.Errorf("%w: id %q", errPermanent, ev.ID)
			}
			area, _, _ := strings.Cut(ev.Type, ".")
			kind := actorKindOf(ev.ActorKind)
			if ev.ActorKind == "" {
				// Nobody asked for it: background work of the system itself.
				kind = eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_SYSTEM
			}
			recs = append(recs, AuditRecord{
				TenantID: tenant, SourceEventID: &id, ActorIdentityID: ev.ActorID, ActorKind: kind,
				Action: ev.Type, ResourceType: area, ResourceID: ev.Subject, After: ev.Data, RequestID: ev.RequestID,
				Result: eventsv1.AuditResult_AUDIT_RESULT_SUCCESS, Time: ev.Time,
			})
		}
		if len(recs) == 0 {
			continue
		}
		if err := s.AppendAudit(ctx, tenant, recs...); err != nil {
			return err
		}
	}
	return nil
}
