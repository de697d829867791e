// Package policyengine decides requests against a tenant's policies in process.
//
// A tenant's policies (Rego modules and JSON Logic rules, each scoped to a resource,
// actions and roles, with an effect and a priority) are compiled once into a Set. A
// decision evaluates only the policies whose resource, actions and roles cover the
// request, highest priority first (deny before allow at equal priority), and stops
// at the first one whose condition matches: that policy decides. When none matches
// the request is denied. A policy whose evaluation fails denies at its place in that
// order, whatever its effect, so an error never grants access; every such error is
// counted and logged.
//
// Speed comes from doing the expensive parts once: Rego modules are compiled into
// one compiler per Set and each policy gets a prepared query; the request is built
// as an OPA AST value directly (no conversion from Go maps); the policies in scope
// for a (resource, action) pair are indexed; OPA's per-evaluation cancellation
// goroutine is replaced by a deadline checked every 64 evaluation steps; the
// shipped baselines run as Go twins of their Rego; and repeated decisions are
// served from a bounded cache that lives and dies with the Set, so a reload
// invalidates it.
//
// Each policy's source is read once at compile time for what of input it can see
// (analysis.go): whether it reads the resource beyond its type tells services
// whether each row they return must be decided on its own (Set.PerResource), and
// whether it reads the principal's claims tells the Authorizer to load them.
//
// Policies are sandboxed: built-ins with side effects or non-deterministic results
// (http.send, net.lookup_ip_addr, opa.runtime, rand.intn, uuid.rfc4122, time.now_ns,
// trace, print) do not compile, reads of `data` outside the policy's own package are
// refused, sources are limited in size and evaluation is bounded by a timeout.
//
// Authorizer adapts an engine cache to pkg/authz.Authorizer: it loads a tenant's
// policies through a Loader, keeps the compiled Set, and reloads the tenant when the
// policy service publishes policy.* events on the bus.
package policyengine
