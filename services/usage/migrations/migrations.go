// Package migrations embeds the usage schema's goose migrations.
package migrations

import (
	"embed"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

//go:embed *.sql
var files embed.FS

// Set is the usage schema's migration set.
var Set = postgres.Migrations{Schema: "usage", FS: files}
