// Package module runs the parts of the manushya binary in dependency order.
//
// The binary is one program with many targets (identity, memory, gateway, ...).
// Each part registers a Definition: a name, the modules it needs, and an Init
// function that builds it. Infrastructure such as the database pool, the bus or
// the gRPC server is a hidden module that targets depend on, so asking for
// `-target=memory` brings up exactly what the memory service needs and nothing else.
//
// The Manager resolves the requested targets to their dependency closure, starts the
// modules one at a time (each Init and Start finishes before the next module's Init,
// so a module can use what its dependencies built), and stops them in reverse order.
// Readiness turns false before anything is stopped, so load balancers stop sending
// traffic before servers drain.
//
// There is deliberately no dependency-injection container: modules share what they
// build through the composition root's own variables, which keeps the wiring
// readable in one place (cmd/manushya).
package module
