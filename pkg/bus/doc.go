// Package bus is Manushya's connection to NATS JetStream: the embedded server
// used by `manushya dev` and tests, the client connection with its stream and
// consumer helpers, and the CloudEvents envelope every domain event travels in.
//
// # Subjects
//
// Every event is published on manushya.<tenant>.<type>, where the tenant is the
// canonical lowercase UUID of the tenant and the type is the dotted event type
// that already names its area, for example
//
//	manushya.0190f1c2-7a4b-7c3d-9e8f-0a1b2c3d4e5f.identity.created
//
// Tenants and types are validated before they become subject tokens, so a
// value can never smuggle in a wildcard (* or >), an extra dot or whitespace
// and make an event land on, or a filter match, another tenant's subjects.
// Consumers that serve all tenants filter on manushya.*.<type> (see
// [TypeFilter]).
//
// # Stream
//
// One stream, MANUSHYA, captures manushya.> on file storage. Its duplicate
// window is what makes the outbox relay safe to retry: the relay publishes
// with the event id as Nats-Msg-Id, so an event re-sent after a lost ack is
// stored once.
//
// # Envelope
//
// Payloads are structured-mode CloudEvents 1.0 JSON with data content type
// application/json and the tenant in the tenantid extension attribute, so a
// consumer can tell the tenant from the payload alone, without the subject.
// Events caused by a request also carry actorid, actorkind and requestid (set by
// pkg/outbox from the request's context).
//
// # Audit stream
//
// A second stream, AUDIT, captures audit.<tenant> on file storage: the audit
// records every process publishes (pkg/audit) for the webhooks service's audit
// writer. Records are not events, so they have their own stream and subjects
// that no event consumer matches.
package bus
