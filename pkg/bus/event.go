package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/google/uuid"
)

// SubjectPrefix is the first token of every event subject.
const SubjectPrefix = "manushya"

// TenantExtension is the CloudEvents extension attribute holding the tenant id.
const TenantExtension = "tenantid"

// CloudEvents extension attributes naming who caused an event and in which
// request (names are lowercase alphanumerics, as the specification requires).
const (
	ActorIDExtension   = "actorid"
	ActorKindExtension = "actorkind"
	RequestIDExtension = "requestid"
)

// maxAttrLen bounds the actor and request id attributes (request ids chosen by
// clients are already capped at 128 by the gRPC server).
const maxAttrLen = 128

// maxTypeLen keeps subjects comfortably short; real types are two or three words.
const maxTypeLen = 128

// ErrInvalidEvent is wrapped by every validation error, so callers can map
// them to InvalidArgument without matching messages.
var ErrInvalidEvent = errors.New("invalid event")

// Event is a domain event: what changed, in which tenant, produced by which
// service. It is carried on the bus as a CloudEvent (see MarshalCloudEvent).
type Event struct {
	// ID is a UUID (v7 from NewEvent). Consumers deduplicate on it and the
	// relay uses it as Nats-Msg-Id.
	ID string
	// Tenant is the tenant's canonical lowercase UUID.
	Tenant string
	// Type is lowercase dotted words starting with the area, e.g. "identity.created".
	Type string
	// Source names the producing service, e.g. "manushya/identity".
	Source string
	// Subject is the id of the resource the event is about (CloudEvents subject).
	Subject string
	// Time is when the change happened.
	Time time.Time
	// Data is the JSON payload; nil means the event carries no data.
	Data json.RawMessage
	// ActorID is the identity that caused the change and ActorKind what it is
	// (user, agent, service, operator); both empty for work the system does on
	// its own. pkg/outbox fills them from the request's principal.
	ActorID   string
	ActorKind string
	// RequestID is the request that caused the change, the id of logs and of the
	// audit log; pkg/outbox fills it from the request's context.
	RequestID string
}

// NewEvent builds a validated event with a fresh UUIDv7 id and the current
// time. data is marshalled to JSON; a json.RawMessage is taken as is (after a
// validity check) and nil means no data.
func NewEvent(tenant, eventType, source, resourceID string, data any) (Event, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, fmt.Errorf("new event id: %w", err)
	}
	e := Event{
		ID:      id.String(),
		Tenant:  tenant,
		Type:    eventType,
		Source:  source,
		Subject: resourceID,
		// UTC drops the monotonic reading, so the time survives a round trip
		// through JSON unchanged.
		Time: time.Now().UTC(),
	}
	switch d := data.(type) {
	case nil:
	case json.RawMessage:
		e.Data = bytes.Clone(d)
	default:
		raw, err := json.Marshal(data)
		if err != nil {
			return Event{}, fmt.Errorf("marshal %s event data: %w", eventType, err)
		}
		e.Data = raw
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// Validate checks every field that ends up in a subject or in the envelope.
func (e Event) Validate() error {
	// Lowercase canonical, because the outbox stores it as uuid and the relay
	// sends PostgreSQL's spelling as Nats-Msg-Id: both must match the payload.
	if !canonicalUUID(e.ID) {
		return fmt.Errorf("%w: id %q is not a lowercase canonical UUID", ErrInvalidEvent, e.ID)
	}
	if err := ValidateTenant(e.Tenant); err != nil {
		return err
	}
	if err := ValidateType(e.Type); err != nil {
		return err
	}
	if e.Source == "" {
		return fmt.Errorf("%w: source is empty", ErrInvalidEvent)
	}
	if e.Time.IsZero() {
		return fmt.Errorf("%w: time is zero", ErrInvalidEvent)
	}
	// The envelope embeds Data verbatim, so anything but one JSON value could
	// rewrite the envelope's own attributes.
	if e.Data != nil && !json.Valid(e.Data) {
		return fmt.Errorf("%w: data is not valid JSON", ErrInvalidEvent)
	}
	for _, a := range []struct{ name, v string }{
		{ActorIDExtension, e.ActorID}, {ActorKindExtension, e.ActorKind}, {RequestIDExtension, e.RequestID},
	} {
		if !printableAttr(a.v) {
			return fmt.Errorf("%w: %s must be at most %d printable ASCII characters", ErrInvalidEvent, a.name, maxAttrLen)
		}
	}
	return nil
}

// printableAttr accepts "" or up to maxAttrLen visible ASCII characters: the
// attributes end up in logs and the events API.
func printableAttr(s string) bool {
	if len(s) > maxAttrLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ValidateTenant accepts only the canonical lowercase form of a UUID: it
// becomes a subject token, and one spelling per tenant keeps subject filters
// exact.
func ValidateTenant(tenant string) error {
	if !canonicalUUID(tenant) {
		return fmt.Errorf("%w: tenant %q is not a lowercase canonical UUID", ErrInvalidEvent, tenant)
	}
	return nil
}

// canonicalUUID reports whether s is a UUID spelled the way uuid.UUID.String
// and PostgreSQL spell it.
func canonicalUUID(s string) bool {
	if len(s) != 36 || strings.ToLower(s) != s {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// ValidateType accepts two or more dot-separated words of lowercase letters,
// digits, '_' and '-', each starting with a letter ("identity.created",
// "api_key.revoked"). Nothing else may reach a subject: '*' and '>' are NATS
// wildcards and empty tokens are invalid subjects.
func ValidateType(eventType string) error {
	if len(eventType) == 0 || len(eventType) > maxTypeLen {
		return fmt.Errorf("%w: type %q must be 1 to %d characters", ErrInvalidEvent, eventType, maxTypeLen)
	}
	words := strings.Split(eventType, ".")
	if len(words) < 2 {
		return fmt.Errorf("%w: type %q must be <area>.<event>", ErrInvalidEvent, eventType)
	}
	for _, w := range words {
		if !validWord(w) {
			return fmt.Errorf("%w: type %q must be lowercase dotted words", ErrInvalidEvent, eventType)
		}
	}
	return nil
}

func validWord(w string) bool {
	if w == "" || w[0] < 'a' || w[0] > 'z' {
		return false
	}
	for i := 1; i < len(w); i++ {
		switch c := w[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// NATSSubject is the subject the event is published on:
// manushya.<tenant>.<type>. The event should be valid (NewEvent and
// ParseCloudEvent guarantee it).
func (e Event) NATSSubject() string {
	return SubjectPrefix + "." + e.Tenant + "." + e.Type
}

// TypeFilter is the subject filter matching one event type (or, with a
// trailing ">", a family such as "memory.>") in every tenant.
func TypeFilter(eventType string) string {
	return SubjectPrefix + ".*." + eventType
}

// TenantFilter is the subject filter matching every event of one tenant.
func TenantFilter(tenant string) string {
	return SubjectPrefix + "." + tenant + ".>"
}

// MarshalCloudEvent encodes the event as structured-mode CloudEvents 1.0 JSON.
func (e Event) MarshalCloudEvent() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	ce := cloudevents.New(cloudevents.CloudEventsVersionV1)
	ce.SetID(e.ID)
	ce.SetType(e.Type)
	ce.SetSource(e.Source)
	if e.Subject != "" {
		ce.SetSubject(e.Subject)
	}
	ce.SetTime(e.Time)
	ce.SetExtension(TenantExtension, e.Tenant)
	for name, v := range map[string]string{ActorIDExtension: e.ActorID, ActorKindExtension: e.ActorKind, RequestIDExtension: e.RequestID} {
		if v != "" {
			ce.SetExtension(name, v)
		}
	}
	ce.SetDataContentType(cloudevents.ApplicationJSON)
	if e.Data != nil {
		// Set directly rather than through SetData: Data is already JSON and
		// SetData would marshal it again.
		ce.DataEncoded = e.Data
	}
	b, err := json.Marshal(ce)
	if err != nil {
		return nil, fmt.Errorf("marshal cloudevent %s: %w", e.ID, err)
	}
	return b, nil
}

// ParseCloudEvent decodes structured-mode CloudEvents 1.0 JSON produced by
// MarshalCloudEvent and validates the result like NewEvent does.
func ParseCloudEvent(b []byte) (ev Event, err error) {
	// The SDK's streaming decoder is not written for hostile input; a panic
	// on a malformed message must not take a consumer down.
	defer func() {
		if r := recover(); r != nil {
			ev, err = Event{}, fmt.Errorf("%w: malformed cloudevent: %v", ErrInvalidEvent, r)
		}
	}()
	// The SDK decoder does not insist on a single well-formed document.
	if !json.Valid(b) {
		return Event{}, fmt.Errorf("%w: cloudevent is not valid JSON", ErrInvalidEvent)
	}
	var ce cloudevents.Event
	if err := ce.UnmarshalJSON(b); err != nil {
		return Event{}, fmt.Errorf("%w: decode cloudevent: %w", ErrInvalidEvent, err)
	}
	if ce.SpecVersion() != cloudevents.CloudEventsVersionV1 {
		return Event{}, fmt.Errorf("%w: specversion %q, want %q", ErrInvalidEvent, ce.SpecVersion(), cloudevents.CloudEventsVersionV1)
	}
	if mt := ce.DataMediaType(); mt != "" && mt != cloudevents.ApplicationJSON {
		return Event{}, fmt.Errorf("%w: datacontenttype %q, want %s", ErrInvalidEvent, mt, cloudevents.ApplicationJSON)
	}
	if ce.DataBase64 {
		return Event{}, fmt.Errorf("%w: data_base64 is not supported", ErrInvalidEvent)
	}
	tenantVal, ok := ce.Extensions()[TenantExtension]
	if !ok {
		return Event{}, fmt.Errorf("%w: missing %s extension", ErrInvalidEvent, TenantExtension)
	}
	tenant, err := types.ToString(tenantVal)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %s extension: %w", ErrInvalidEvent, TenantExtension, err)
	}
	ev = Event{
		ID:      ce.ID(),
		Tenant:  tenant,
		Type:    ce.Type(),
		Source:  ce.Source(),
		Subject: ce.Subject(),
		Time:    ce.Time().UTC(),
	}
	for name, dst := range map[string]*string{ActorIDExtension: &ev.ActorID, ActorKindExtension: &ev.ActorKind, RequestIDExtension: &ev.RequestID} {
		if v, ok := ce.Extensions()[name]; ok {
			if *dst, err = types.ToString(v); err != nil {
				return Event{}, fmt.Errorf("%w: %s extension: %w", ErrInvalidEvent, name, err)
			}
		}
	}
	if ce.DataEncoded != nil {
		// The decoder may hand back a slice of b; the caller may reuse b.
		ev.Data = bytes.Clone(ce.DataEncoded)
	}
	if err := ev.Validate(); err != nil {
		return Event{}, err
	}
	return ev, nil
}
