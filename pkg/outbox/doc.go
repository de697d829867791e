// Package outbox is the transactional outbox: a service records its domain
// events in the same PostgreSQL transaction as the change they describe
// ([Write]), and a [Relay] publishes them to NATS JetStream after commit. An
// event therefore reaches the bus if and only if its change was committed,
// even when NATS is down at the time (it is published when NATS returns) or
// the process dies right after commit (another relay picks it up).
//
// # The table
//
// Each service schema has its own outbox, created by the service's first
// migration with exactly this DDL:
//
//	CREATE TABLE <schema>.outbox (
//	  seq        bigserial PRIMARY KEY,
//	  event_id   uuid NOT NULL,
//	  subject    text NOT NULL,
//	  payload    bytea NOT NULL,
//	  created_at timestamptz NOT NULL DEFAULT now()
//	);
//
// payload is the event's CloudEvents JSON and subject its NATS subject, both
// computed at write time, so the relay never needs to understand events.
//
// The outbox has no row-level security, unlike every tenant table. It is
// written inside tenant transactions, where RLS would only check a tenant_id
// the payload already carries, and it is read and emptied by the relay, which
// serves all tenants and has no tenant to set; with RLS enabled and no tenant
// set it would see no rows at all. Nothing but the relay reads it, and rows
// live only until they are published.
//
// # Delivery
//
// [Write] also runs pg_notify('manushya_outbox', '<schema>'). Notifications are
// transactional: they are delivered at commit and dropped on rollback, so a
// relay wakes exactly when there is something new. Relays also poll once a
// second, which covers notifications lost while their listening connection
// was down.
//
// A relay pass locks a batch with SELECT ... FOR UPDATE SKIP LOCKED,
// publishes it with the event id as Nats-Msg-Id, waits for the stream's acks
// and deletes what was acknowledged in the same transaction. Any number of
// relays (processes) can share a schema: SKIP LOCKED hands each a different
// batch. When a publish fails the transaction rolls back and the rows are
// retried after a capped backoff. A retry of a publish that did reach the
// stream (its ack was lost) is dropped by the stream's duplicate window
// (bus.DefaultStreamOptions: two minutes), so within that window delivery is
// exactly once; beyond it, consumers' idempotency on the event id is the
// last line.
//
// One relay publishes in seq order, except that an event whose publish
// failed is retried after the rest of its batch went out; with several
// relays batches interleave. Consumers must not rely on a global order.
//
// The app role needs SELECT, INSERT and DELETE on the table and USAGE on its
// sequence; postgres.Migrate grants those on every table of a schema.
package outbox
