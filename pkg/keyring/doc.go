// Package keyring is the field-level envelope encryption of the suite.
//
// Secrets at rest (TOTP seeds, token-signing keys, refresh-token successors,
// webhook secrets and headers) are sealed with AES-256-GCM (Tink AEAD) under a data
// key (DEK) of their scope: the system, a tenant, or one identity of a tenant. Data
// keys are stored in the shared keyring schema wrapped by a key-encryption key (KEK)
// behind the KMS interface: LocalKMS holds KEKs from the configuration, and a cloud
// KMS can take its place. Unwrapped data keys are cached in process for a short
// time, so sealing and opening cost microseconds.
//
// Every ciphertext carries its scope kind and data-key id (see Parse) and is bound,
// as associated data, to its record: the field, tenant, identity and row. A value
// copied to another row, field, identity or tenant does not open.
//
// Rotation: Rotate makes a new primary key for a scope, used by new writes at once
// (in other processes within the cache TTL); the old key is retired. The
// re-encryption job (Run, Reencrypt) re-wraps data keys under the current KEK,
// re-seals every registered field's rows that are under an old key or an older
// format, batch by batch with progress in metrics, logs and Status, and destroys a
// retired key once every field's last complete pass proved no row uses it.
// Versions lists a scope's key versions; package keyadmin serves status, rotation
// and passes on demand as EncryptionService.
// Destroy crypto-shreds a scope: its keys are deleted, so whatever was sealed under
// them stays unreadable wherever copies are (backups, event payloads).
package keyring
