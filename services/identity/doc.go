// Package identity is the identity service: tenants, identities and their
// credentials. It owns the identity schema, verifies credentials for every other
// service, and emits identity.* events through its outbox.
//
// ErasureService (erasure.go, erasure_tenant.go) erases an identity or a tenant:
// its rows here in one transaction with the receipt and identity.erased (or
// tenant.erased), then its data keys; the other services report their part with
// erasure.progress, which completes the receipt (pkg/erasure, docs/privacy.md).
package identity
