// Package migrations embeds the webhooks schema's goose migrations.
package migrations

import (
	"embed"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

//go:embed *.sql
var files embed.FS

// Set is the webhooks schema's migration set.
var Set = postgres.Migrations{Schema: "webhooks", FS: files}
