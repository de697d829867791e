// Package metering sums usage in process and publishes the sums as usage events
// billed by the usage service: every served RPC as "api.request" per tenant,
// identity and route, and whatever a service meters through Meter.Add (memory
// searches as "memory.search" per tenant, identity and mode).
//
// A Meter sums quantities in memory per (tenant, identity, usage type, up to
// MaxProperties properties) and a loop publishes the sums every interval (2 s by
// default) as "usage.recorded" events on the bus, which the usage service's
// consumer meters. A sum is one event however many calls it counts, so frequent
// usage costs neither a database write per call nor a domain event per call that
// webhook subscribers and the event store would receive. Counting in process keeps
// the request path free of I/O: one map update under a mutex. Each published
// event gets its id when its interval is cut, and keeps it through every retry, so a
// publish whose ack was lost and is sent again is dropped both by JetStream
// (Nats-Msg-Id) and by the usage service's (tenant, source, id) deduplication. A
// crash loses at most the interval being counted and whatever could not be
// published.
//
// What counts as api.request: authenticated calls of a tenant's identities,
// whatever their outcome, except calls refused for rate or quota
// (RESOURCE_EXHAUSTED: nothing was served) and calls services make on their own
// behalf (principal kind "service").
package metering
