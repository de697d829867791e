// Package secretbox seals small secrets (TOTP seeds, signing keys) for storage with
// AES-256-GCM under a key-encryption key from the configuration.
//
// A sealed value reads: version byte, key id length, key id, 12-byte nonce,
// ciphertext and tag. The key id lets a Keyring hold old keys for reading while new
// values are sealed under the current one, so the key can be rotated without
// rewriting every row at once. The associated data (for example the owning row's id)
// binds a ciphertext to its row: a value copied to another row does not open.
//
// Field-level envelope encryption is pkg/keyring now; this format remains for values
// sealed before it (identity secrets under auth.encryption_key or the pepper-derived
// key), which the keyring opens through it and re-seals.
package secretbox
