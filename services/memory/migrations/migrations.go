// Package migrations embeds the memory schema's goose migrations.
package migrations

import (
	"embed"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

//go:embed *.sql
var files embed.FS

// Set is the memory schema's migration set.
var Set = postgres.Migrations{Schema: "memory", FS: files}
