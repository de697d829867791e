// Package migrations embeds the embedding schema's goose migrations.
package migrations

import (
	"embed"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

//go:embed *.sql
var files embed.FS

// Set is the embedding schema's migration set.
var Set = postgres.Migrations{Schema: "embedding", FS: files}
