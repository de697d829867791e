// Package audit records who did what in a tenant: mutating requests, sign-ins and
// other authentication events, and authorization decisions. It builds records and
// hands them to a Sink; it does not store them.
//
// Every process that serves gRPC puts UnaryServerInterceptor in its chain with a
// BusSink, which publishes records to the AUDIT stream of NATS JetStream
// (audit.<tenant>, see pkg/bus) in the background, batched, so a request never
// waits for the audit log. The webhooks service's audit writer consumes the
// stream and appends the records to the tenant's hash-chained log, once per
// record id, so a redelivered record is not appended twice.
//
// Secrets never leave the process: request and response bodies are redacted
// (Redact) before they are put in a record.
package audit
