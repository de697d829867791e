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

	"github.com/manushya-ai/manushya/pkg/bus"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	"github.com/manushya-ai/manushya/services/webhooks/store"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

// ConsumerAudit is the audit writer's durable consumer.
const ConsumerAudit = "audit-writer"

// AuditRecord is one thing to put in the audit log. Mutating requests and
// authentication events reach it through AppendAudit; domain events through the
// audit writer consumer.
type AuditRecord struct {
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

// secretish names keys whose values never enter the audit log.
var secretish = []string{"secret", "password", "token", "api_key", "key_hash", "credential", "private_key"}

// redact replaces the values of secret-looking keys, at any depth.
func redact(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil
	}
	out, err := json.Marshal(redactValue(v))
	if err != nil {
		return nil
	}
	return out
}

func redactValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			lk := strings.ToLower(k)
			hidden := false
			for _, s := range secretish {
				if strings.Contains(lk, s) {
					hidden = true
					break
				}
			}
			if hidden {
				t[k] = "[redacted]"
			} else {
				t[k] = redactValue(val)
			}
		}
		return t
	case []any:
		for i := range t {
			t[i] = redactValue(t[i])
		}
		return t
	}
	return v
}

// appendAudit chains records onto the tenant's log inside tx; records already
// logged for their source event are skipped.
func (s *Service) appendAudit(ctx context.Context, tx *store.Tx, tenant uuid.UUID, recs []AuditRecord) error {
	head, err := tx.LockAuditHead(ctx, tenant)
	if err != nil {
		return fmt.Errorf("lock audit head: %w", err)
	}
	seq, prev := head.Sequence, head.Hash
	appended := false
	for _, r := range recs {
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
			TenantID: tenant, Sequence: seq, ID: newID(), SourceEventID: r.SourceEventID,
			ActorIdentityID: r.ActorIdentityID, ActorKind: int16(r.ActorKind), ActorApiKeyID: r.ActorAPIKeyID,
			ActorSessionID: r.ActorSessionID, ActorExternalID: r.ActorExternalID, Action: r.Action,
			ResourceType: r.ResourceType, ResourceID: r.ResourceID, Before: redact(r.Before), After: redact(r.After),
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

// AppendAudit records entries for one tenant in their own transaction.
func (s *Service) AppendAudit(ctx context.Context, tenant uuid.UUID, recs ...AuditRecord) error {
	return s.store.InTenant(ctx, tenant, func(tx *store.Tx) error { return s.appendAudit(ctx, tx, tenant, recs) })
}

// auditEvents is the audit writer: every domain event becomes an entry. Test
// events are left out.
func (s *Service) auditEvents(ctx context.Context, evs []bus.Event) error {
	groups, order, err := byTenant(evs)
	if err != nil {
		return err
	}
	for _, tenant := range order {
		var recs []AuditRecord
		for _, ev := range groups[tenant] {
			if ev.Type == "webhook.test" {
				continue
			}
			id, err := uuid.Parse(ev.ID)
			if err != nil {
				return fmt.Errorf("%w: id %q", errPermanent, ev.ID)
			}
			area, _, _ := strings.Cut(ev.Type, ".")
			recs = append(recs, AuditRecord{
				TenantID: tenant, SourceEventID: &id, ActorKind: eventsv1.AuditActorKind_AUDIT_ACTOR_KIND_SYSTEM,
				Action: ev.Type, ResourceType: area, ResourceID: ev.Subject, After: ev.Data,
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
