// Package migrations embeds the policy schema's goose migrations.
package migrations

import (
	"embed"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

//go:embed *.sql
var files embed.FS

// Set is the policy schema's migration set.
var Set = postgres.Migrations{Schema: "policy", FS: files}
