// Package identity is the identity service: tenants, identities and their
// credentials. It owns the identity schema, verifies credentials for every other
// service, and emits identity.* events through its outbox.
//
// Single sign-on (sso*.go): OIDC providers per tenant; a sign-in is bound to the
// browser that started it by a cookie whose hash the state keeps
// (sso_browser.go), and with a roles claim mapped the identity's roles follow the
// provider at every sign-in within the provider's allowed_roles (sso_roles.go).
//
// Secrets at rest go through the Sealer (sealing.go; the shared keyring in the
// binary). Claims a tenant lists in TenantSettings.sensitive_claims are sealed per
// identity in identity.sensitive_claims, opened for readers and redacted in events
// and audit records (claims_sensitive.go).
//
// ErasureService (erasure.go, erasure_tenant.go) erases an identity or a tenant:
// its rows here in one transaction with the receipt and identity.erased (or
// tenant.erased), then its data keys; the other services report their part with
// erasure.progress, which completes the receipt (pkg/erasure, docs/privacy.md).
//
// DeleteIdentity soft-deletes by default: the identity stops authenticating, its
// sessions and API keys are revoked, and RestoreIdentity (restore.go) brings it
// back, active with its memories but without those credentials, within its
// tenant's restore window, TenantSettings.deleted_identity_retention_days
// (default 30). The retention sweeper (retention.go) purges soft-deleted
// identities, as a hard DeleteIdentity does, once that window has passed. Every
// purge writes identity.deleted and identity.purged (ids only), on which the
// memory service deletes the identity's memories; usage records stay.
package identity
