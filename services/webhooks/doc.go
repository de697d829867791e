// Package webhooks is the webhooks service. It owns the event store, the audit log
// and webhook delivery.
//
// Three durable consumers read every domain event from the MANUSHYA stream
// (manushya.>): the event store ("event-store") keeps a queryable copy in
// webhooks.events, partitioned by day; the audit writer ("audit-writer") chains an
// entry per event onto the tenant's hash-chained audit log; the dispatcher
// ("webhook-dispatcher") turns each event into one delivery per subscribed
// endpoint. All three are idempotent on event id and handle a tenant's events in
// stream order (one lane per tenant hash), batching a lane's waiting messages into
// one transaction.
//
// Audit. Every process publishes audit records (mutating requests, sign-ins,
// token refreshes, policy decisions; pkg/audit) to the AUDIT stream; the durable
// consumer "audit-records" appends them to the tenant's chain, skipping record ids
// already there, so a redelivery never appends twice.
//
// Delivery. A delivery row holds the exact body POSTed; its queue row
// (webhooks.delivery_queue, ids and times only, no RLS) carries next_attempt_time
// and a lease. The dispatcher leases new deliveries as it creates them and hands
// them to their endpoint's in-memory queue; the scheduler leases due retries and
// overflow with FOR UPDATE SKIP LOCKED, skipping endpoints whose queue is full.
// Each endpoint has its own queue and up to EndpointConcurrency workers (1 at a
// time when ordered), under a global cap, so a slow or dead endpoint only ever
// fills its own queue. Attempts are signed the Standard Webhooks way (webhook-id =
// delivery id, constant across attempts; webhook-timestamp; webhook-signature
// "v1,<base64 HMAC-SHA256(id.timestamp.body)>", one per secret during a rotation
// overlap), time out after Timeout, follow no redirects and read at most
// ResponseReadBytes of the answer. A failure is retried on RetrySchedule with
// ±10% jitter, or after Retry-After when longer; 410 disables the endpoint; an
// endpoint failing for DisableAfter is disabled; both emit
// webhook.endpoint.disabled through this service's outbox. Outcomes are recorded
// by group commit (outcomes.go): a worker queues its attempt's outcome and goes on,
// and one transaction per tenant records everything queued while the previous one
// committed; the delivery stays leased until then, so a crash in between only
// repeats the attempt (same webhook-id). An ordered endpoint's worker waits for the
// commit before its next attempt. Every state change is in PostgreSQL, so a
// restarted process resumes retries when they are due.
//
// SSRF. Connections go through a dialer whose Control hook checks the address
// actually dialled (after DNS): private, loopback, link-local (metadata),
// CGNAT, multicast and reserved ranges are refused unless in AllowedAddresses.
// The transport uses no proxy. URLs with literal addresses are also refused at
// create and update.
//
// Secrets. The whsec_ secret is returned only by CreateWebhook and
// RotateWebhookSecret, never logged, and always stored sealed by the keyring
// (Deps.Keyring: envelope encryption under the tenant's data key, bound to the
// webhook's row). Values from before the keyring (plain, or AES-GCM under
// Config.SecretKey) still open and are re-sealed by the keyring's job. Custom
// header values are sealed the same way and redacted in the attempt log.
//
// Retention. Events and attempts live in day partitions created on demand by a
// SECURITY DEFINER function (the app role cannot create tables) and dropped whole
// past EventRetention/AttemptRetention. Audit entries are removed per tenant
// setting, oldest first; the oldest entry kept anchors the chain.
package webhooks
