// Package migrations embeds the identity schema's goose migrations.
package migrations

import (
	"embed"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

//go:embed *.sql
var files embed.FS

// Set is the identity schema's migration set.
var Set = postgres.Migrations{Schema: "identity", FS: files}
