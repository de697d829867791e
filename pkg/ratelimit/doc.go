// Package ratelimit is the rate limiter of every gRPC server's interceptor chain
// (grpcserver.Options.RateLimiter).
//
// Limits use GCRA (the generic cell rate algorithm): a request is allowed when the
// theoretical arrival time of the key, advanced by the request's cost, stays within
// the burst allowance. Unlike fixed windows there is no boundary at which a caller
// can spend two windows' worth at once. Counters live in Redis or in process. On
// Redis one Lua script call decides every counter of a request (one round trip however
// many limits apply); its keys carry the tenant as a hash tag, "{tenant}", so they
// share a slot and the script runs on Redis Cluster. Each counter decides on its own,
// exactly as if asked alone, with redis_rate's arithmetic and key prefix ("rate:").
//
// # Which limits apply
//
// A Limit has a scope (tenant, role, identity, API key), an optional subject (a role
// name, an identity id, a key id) and an optional route group. A request's route
// group is the permission its RPC declares ("memory.search"); a limit's route group
// matches it exactly or as a prefix of whole words ("memory" covers "memory.search",
// "memory.write"). For each scope the most specific matching limit wins: a tenant's
// own limit over a global default, a named subject over the scope's default, a longer
// route group over a shorter one. Every scope with a winning limit is checked and the
// request is refused when any of them is exhausted.
//
// Counters are per caller: a role limit counts each identity with that role on its
// own (the role decides how much, not who shares), an identity limit each identity,
// an API key limit each key, a tenant limit all callers of the tenant together. Keys
// name the route group of the limit, not of the request, so a limit on "memory"
// counts all memory routes together.
//
// # Changes without restart
//
// Global defaults come from code (DefaultLimits) and from a LimitSource (the usage
// service stores overrides in PostgreSQL). Limits are cached per tenant; Invalidate
// drops the cache, and Watch subscribes to ratelimit.updated events on the bus so
// every process picks up a change within moments. A periodic refresh bounds
// staleness if an event is missed.
//
// # Redis down
//
// When Redis fails, the limiter either counts in process (FallbackLocal, the default:
// each process enforces the limit on its own) or lets requests through
// (FallbackOpen). Either way the request never fails because of the limiter; the
// manushya_ratelimit_backend_errors_total counter and one log line per outage say so.
// After a failure Redis is left alone for a short cool-down so an outage does not add
// a timeout to every request.
//
// # Responses
//
// Every limited request gets the RateLimit-Policy and RateLimit headers of the IETF
// draft (draft-ietf-httpapi-ratelimit-headers) and the legacy X-RateLimit-Limit,
// X-RateLimit-Remaining and X-RateLimit-Reset, for the limit closest to exhaustion. A
// refusal is RESOURCE_EXHAUSTED with ErrorInfo reason ERROR_REASON_RATE_LIMITED (the
// counter's key under metadata "key"), a google.rpc.RetryInfo detail and a
// retry-after header. Shadow limits are counted and reported (metrics, logs) but
// never refuse.
package ratelimit
