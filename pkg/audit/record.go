package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

// Result is how an audited action ended.
type Result string

// Results.
const (
	// ResultSuccess: the action was carried out.
	ResultSuccess Result = "success"
	// ResultDenied: authentication or authorization refused it (a failed sign-in
	// included).
	ResultDenied Result = "denied"
	// ResultError: it was allowed but failed.
	ResultError Result = "error"
)

// Actor kinds. The principal's kind (pkg/auth) is used as is for users, agents
// and services.
const (
	KindUser     = auth.KindUser
	KindAgent    = auth.KindAgent
	KindService  = auth.KindService
	KindOperator = "operator"
	KindSystem   = "system"
)

// Actor is who acted. Every field may be empty: a failed sign-in with an unknown
// identifier has no identity.
type Actor struct {
	IdentityID string `json:"identity_id,omitempty"`
	Kind       string `json:"kind,omitempty"`
	APIKeyID   string `json:"api_key_id,omitempty"`
	SessionID  string `json:"session_id,omitempty"`
	ExternalID string `json:"external_id,omitempty"`
}

// Record is one entry to be appended to a tenant's audit log. It travels as
// JSON on the bus.
type Record struct {
	// ID identifies the record (a UUIDv7, set by the sink when empty); the audit
	// writer appends each id once.
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	Actor    Actor  `json:"actor"`
	// Action is the full gRPC method of a request, or a dotted name for other
	// records ("auth.login", "authz.memory.read").
	Action       string `json:"action"`
	ResourceType string `json:"resource_type"`
	ResourceID   string `json:"resource_id,omitempty"`
	// Before and After are JSON, already redacted (the request and the response
	// of a call; details such as a failure's reason for other records).
	Before      json.RawMessage `json:"before,omitempty"`
	After       json.RawMessage `json:"after,omitempty"`
	RequestID   string          `json:"request_id,omitempty"`
	ClientIP    string          `json:"client_ip,omitempty"`
	UserAgent   string          `json:"user_agent,omitempty"`
	Result      Result          `json:"result"`
	ErrorReason int32           `json:"error_reason,omitempty"`
	Time        time.Time       `json:"time"`
}

// Limits of a record's fields. Bodies over MaxBodyBytes are replaced by a note of
// their size, so one large memory cannot make a record the bus refuses.
const (
	MaxBodyBytes = 32 << 10
	maxShort     = 512
)

// ErrInvalidRecord is wrapped by every validation error.
var ErrInvalidRecord = errors.New("invalid audit record")

// Validate checks what the audit writer relies on: a UUID id and tenant, an
// action, a known result and bounded fields.
func (r *Record) Validate() error {
	if _, err := uuid.Parse(r.ID); err != nil {
		return fmt.Errorf("%w: id %q", ErrInvalidRecord, r.ID)
	}
	if t, err := uuid.Parse(r.TenantID); err != nil || t.String() != r.TenantID {
		return fmt.Errorf("%w: tenant_id %q is not a lowercase canonical UUID", ErrInvalidRecord, r.TenantID)
	}
	if r.Action == "" {
		return fmt.Errorf("%w: action is empty", ErrInvalidRecord)
	}
	switch r.Result {
	case ResultSuccess, ResultDenied, ResultError:
	default:
		return fmt.Errorf("%w: result %q", ErrInvalidRecord, r.Result)
	}
	for name, v := range map[string]string{
		"action": r.Action, "resource_type": r.ResourceType, "resource_id": r.ResourceID,
		"request_id": r.RequestID, "client_ip": r.ClientIP, "user_agent": r.UserAgent,
		"actor.identity_id": r.Actor.IdentityID, "actor.kind": r.Actor.Kind, "actor.api_key_id": r.Actor.APIKeyID,
		"actor.session_id": r.Actor.SessionID, "actor.external_id": r.Actor.ExternalID,
	} {
		if len(v) > maxShort {
			return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidRecord, name, maxShort)
		}
	}
	for name, b := range map[string]json.RawMessage{"before": r.Before, "after": r.After} {
		if len(b) > 0 && !json.Valid(b) {
			return fmt.Errorf("%w: %s is not JSON", ErrInvalidRecord, name)
		}
	}
	if r.Time.IsZero() {
		return fmt.Errorf("%w: time is zero", ErrInvalidRecord)
	}
	return nil
}

// fill sets the id and time of a record that has none and bounds its fields.
func (r *Record) fill() {
	if r.ID == "" {
		r.ID = uuid.Must(uuid.NewV7()).String()
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	if r.Result == "" {
		r.Result = ResultSuccess
	}
	r.Before, r.After = bound(r.Before), bound(r.After)
	r.UserAgent = truncate(r.UserAgent, maxShort)
	r.ClientIP = truncate(r.ClientIP, 64)
	r.Actor.ExternalID = truncate(r.Actor.ExternalID, maxShort)
	r.ResourceID = truncate(r.ResourceID, maxShort)
}

func bound(b json.RawMessage) json.RawMessage {
	if len(b) <= MaxBodyBytes {
		return b
	}
	out, _ := json.Marshal(map[string]any{"truncated": true, "bytes": len(b)})
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so the result stays valid UTF-8.
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}

// ActorOf is the actor of an authenticated principal.
func ActorOf(p *auth.Principal) Actor {
	if p == nil {
		return Actor{}
	}
	kind := p.Kind
	if p.IsOperator() {
		kind = KindOperator
	}
	return Actor{IdentityID: p.IdentityID, Kind: kind, APIKeyID: p.APIKeyID, SessionID: p.SessionID, ExternalID: p.ExternalID}
}

// Client is where a request came from.
type Client struct {
	IP        string
	UserAgent string
}

// ClientOf reads the client address and user agent of a gRPC request: the
// gateway forwards them as x-forwarded-for (which it sets itself, replacing any
// value the client sent) and grpcgateway-user-agent; direct gRPC callers give
// the peer address and their user-agent.
func ClientOf(ctx context.Context) Client {
	var c Client
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-forwarded-for"); len(v) > 0 {
		first, _, _ := strings.Cut(v[0], ",")
		c.IP = strings.TrimSpace(first)
	}
	if c.IP == "" {
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			c.IP = p.Addr.String()
			if host, _, err := net.SplitHostPort(c.IP); err == nil {
				c.IP = host
			}
		}
	}
	for _, k := range []string{"grpcgateway-user-agent", "user-agent"} {
		if v := md.Get(k); len(v) > 0 && v[0] != "" {
			c.UserAgent = v[0]
			break
		}
	}
	c.IP = truncate(c.IP, 64)
	c.UserAgent = truncate(c.UserAgent, maxShort)
	return c
}

// FromRequest starts a record with what the request's context knows: the actor
// (when authenticated), the request id, the client address and user agent.
func FromRequest(ctx context.Context, tenantID, action string) Record {
	r := Record{TenantID: tenantID, Action: action, RequestID: telemetry.RequestID(ctx), Result: ResultSuccess}
	if p, ok := auth.FromContext(ctx); ok {
		r.Actor = ActorOf(p)
	}
	c := ClientOf(ctx)
	r.ClientIP, r.UserAgent = c.IP, c.UserAgent
	return r
}

// JSON marshals v for Before or After, redacted; nil when it cannot.
func JSON(v any) json.RawMessage {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return Redact(raw)
}
