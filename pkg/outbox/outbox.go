package outbox

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

// Channel is the LISTEN/NOTIFY channel Write notifies and relays listen on;
// the notification payload is the schema name.
const Channel = "manushya_outbox"

// MaxPayload is the largest event Write accepts. NATS refuses messages over
// its max_payload (1 MiB by default, headers included), and a row the stream
// refuses would be retried forever, so it is refused at the source instead.
const MaxPayload = 1<<20 - 4<<10

// ErrInvalidSchema is returned for a schema name that is not a plain identifier.
var ErrInvalidSchema = errors.New("invalid outbox schema name")

// ErrEventTooLarge is returned by Write for an event over MaxPayload.
var ErrEventTooLarge = errors.New("event too large for the outbox")

var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateSchema accepts lower case identifiers, the form service schemas use.
func ValidateSchema(schema string) error {
	if !schemaPattern.MatchString(schema) {
		return fmt.Errorf("%w: %q", ErrInvalidSchema, schema)
	}
	return nil
}

func table(schema string) string {
	return pgx.Identifier{schema, "outbox"}.Sanitize()
}

// insertSQL inserts the events in argument order (WITH ORDINALITY keeps seq in
// the order the caller listed them) and notifies relays, in one round trip.
// PostgreSQL folds identical notifications of one transaction into one, so a
// transaction that writes many times still wakes relays once.
func insertSQL(schema string) string {
	return `WITH ins AS (
  INSERT INTO ` + table(schema) + ` (event_id, subject, payload)
  SELECT id, subject, payload
  FROM unnest($1::uuid[], $2::text[], $3::bytea[]) WITH ORDINALITY AS e(id, subject, payload, ord)
  ORDER BY ord
)
SELECT pg_notify('` + Channel + `', $4)`
}

// Write records events in the outbox of schema as part of tx. They are
// published after tx commits and never if it rolls back. Each event is
// validated and encoded here, so a bad event fails the caller's transaction
// rather than the relay. An event written inside a request that does not name
// its actor or request gets them from ctx (the authenticated principal and the
// request id), so every handler's events say who caused them without each
// handler passing it along.
func Write(ctx context.Context, tx pgx.Tx, schema string, events ...bus.Event) error {
	if err := ValidateSchema(schema); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	ids := make([]string, len(events))
	subjects := make([]string, len(events))
	payloads := make([][]byte, len(events))
	actorID, actorKind := ActorOf(ctx)
	requestID := telemetry.RequestID(ctx)
	for i, e := range events {
		if e.ActorID == "" && e.ActorKind == "" {
			e.ActorID, e.ActorKind = actorID, actorKind
		}
		if e.RequestID == "" {
			e.RequestID = requestID
		}
		payload, err := e.MarshalCloudEvent()
		if err != nil {
			return fmt.Errorf("outbox %s: event %s: %w", schema, e.Type, err)
		}
		if len(payload) > MaxPayload {
			return fmt.Errorf("outbox %s: event %s %s is %d bytes (max %d): %w",
				schema, e.Type, e.ID, len(payload), MaxPayload, ErrEventTooLarge)
		}
		ids[i], subjects[i], payloads[i] = e.ID, e.NATSSubject(), payload
	}
	if _, err := tx.Exec(ctx, insertSQL(schema), ids, subjects, payloads, schema); err != nil {
		return fmt.Errorf("outbox %s: insert %d events: %w", schema, len(events), err)
	}
	return nil
}

// ActorOf is the actor of the request in ctx as events name it: the principal's
// identity and kind ("operator" for the platform operator), or empty outside a
// request.
func ActorOf(ctx context.Context) (id, kind string) {
	p, ok := auth.FromContext(ctx)
	if !ok || p == nil {
		return "", ""
	}
	kind = p.Kind
	if p.IsOperator() {
		kind = "operator"
	}
	return p.IdentityID, kind
}
