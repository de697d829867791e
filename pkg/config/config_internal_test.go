package config

import (
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The settings table drives defaults, flags and the unknown-key check, so it must
// list exactly the keys Config decodes.
func TestSettingsMatchConfigTags(t *testing.T) {
	t.Parallel()
	var fromTags []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for f := range typ.Fields() {
			tag := f.Tag.Get("koanf")
			if tag == "" || tag == "-" {
				continue
			}
			if f.Type.Kind() == reflect.Struct {
				walk(prefix+tag+".", f.Type)
				continue
			}
			fromTags = append(fromTags, prefix+tag)
		}
	}
	walk("", reflect.TypeFor[Config]())

	var fromTable []string
	for _, s := range settings {
		fromTable = append(fromTable, s.key)
	}
	slices.Sort(fromTags)
	slices.Sort(fromTable)
	require.Equal(t, fromTags, fromTable)
}

func TestEnvTransform(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"MANUSHYA_TARGET":               "target",
		"MANUSHYA_GRPC_ADDR":            "grpc.addr",
		"MANUSHYA_DATABASE_URL":         "database.url",
		"MANUSHYA_DATABASE_MIGRATE_URL": "database.migrate_url",
		"MANUSHYA_AUTH_API_KEY_PEPPER":  "auth.api_key_pepper",
		"MANUSHYA_CONFIG":               "",
		"MANUSHYA_TEST_REDIS_URL":       "",
		"MANUSHYA_DATABASE":             "",
	} {
		got, _ := envTransform(in, "v")
		require.Equal(t, want, got, in)
	}
}
