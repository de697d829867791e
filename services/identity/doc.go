// Package identity is the identity service: tenants, identities and their
// credentials. It owns the identity schema, verifies credentials for every other
// service, and emits identity.* events through its outbox.
package identity
