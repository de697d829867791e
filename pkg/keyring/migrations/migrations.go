// Package migrations embeds the keyring schema's goose migrations.
package migrations

import (
	"embed"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

//go:embed *.sql
var files embed.FS

// Set is the keyring schema's migration set.
var Set = postgres.Migrations{Schema: "keyring", FS: files}
