// Package config holds the configuration of the manushya binary: one Config for
// every command and target, so a setting means the same thing wherever it is read.
//
// Settings come from, lowest precedence first: built-in defaults, an optional YAML
// file (-config or MANUSHYA_CONFIG), MANUSHYA_* environment variables, and
// command-line flags. Every setting has a dotted key (database.url) that names it
// in the file (nested), as a flag (--database.url, or -database.url) and in the
// environment (MANUSHYA_DATABASE_URL: the first word after the prefix is the
// section, the rest is the field).
//
// Loading never fails for a missing required value: what is required depends on the
// command (serve, dev, migrate), so Validate takes the mode and reports every
// problem at once, each naming its key.
package config
