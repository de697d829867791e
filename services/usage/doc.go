// Package usage is the usage service: usage metering, rate-limit administration and
// the operators' monitoring endpoints.
//
// # Metering
//
// Usage events arrive from the bus (the durable consumer usage-aggregator turns
// domain events into usage events: memory.created into memory.write,
// identity.created into identity.active, usage.recorded as it says) and from
// POST /v1/usage/events (batches of up to 1000, a status per event). Each event is
// deduplicated on (tenant, source, id), accepted up to 35 days late and up to five
// minutes early, and stored in one statement per tenant and batch: its dedup key,
// the raw event (monthly partitions of usage.events, dropped whole past retention)
// and the per-minute and per-day rollups of its own time, so a late event corrects
// the bucket it belongs to. AggregateUsage rebuilds the rollups of a range from the
// raw events; running it twice changes nothing the second time.
//
// # Summary
//
// GetUsageSummary never reads a row per (day, type, identity). The same ingest
// statement keeps three more rollups: per (day, type) for totals and the trend;
// per (type, identity) over aligned spans of 2 to 256 days (usage.rollup_span), so a
// period is a handful of spans per identity (Decompose) for the top identities; and
// per (identity, year, type) a bit per active day (usage.identity_activity), so the
// active identities of a period are one masked row each. AggregateUsage rebuilds
// them (Tx.Rederive) after the daily rows. API calls arrive as usage.recorded
// events of type api.request from pkg/metering's interceptor in every process.
//
// # Quotas
//
// Monthly quotas per usage type (set by the operator) emit usage.quota.warning at
// 80% and usage.quota.exceeded at 100%, once per month, through the outbox.
// QuotaChecker refuses actions beyond an enforced quota with RESOURCE_EXHAUSTED
// (QUOTA_EXCEEDED); it has the shape of grpcserver.RateLimiter.
//
// # Rate limits
//
// Overrides of pkg/ratelimit's defaults are rows of usage.rate_limits: global ones
// (the operator's) and tenants' own, under row-level security that lets a tenant
// read the globals but write only its own. Every change emits ratelimit.updated
// through the outbox; each process's limiter (ratelimit.Limiter.Watch) reloads on
// it. LimitSource serves the rows to limiters in any process.
//
// # Monitoring
//
// Dependency health with latency, JetStream consumer lag (also exported as
// manushya_jetstream_consumer_* gauges), outbox backlog per service schema and
// error rates per method from the process's gRPC metrics.
package usage
