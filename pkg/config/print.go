package config

import (
	"fmt"
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/manushya-ai/manushya/pkg/telemetry"
)

// Redacted returns the configuration as nested maps keyed like the YAML file, with
// secrets replaced by "****" and passwords masked in URLs, for -print-config and
// startup logs. Durations are written as strings ("15s").
func (c *Config) Redacted() map[string]any {
	return redactStruct(reflect.ValueOf(c).Elem())
}

// RedactedYAML is Redacted as a YAML document that Load accepts back (with the
// masked secrets to fill in).
func (c *Config) RedactedYAML() ([]byte, error) {
	b, err := yaml.Marshal(c.Redacted())
	if err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return b, nil
}

func redactStruct(v reflect.Value) map[string]any {
	out := make(map[string]any)
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("koanf")
		if key == "" || key == "-" || !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		switch {
		case fv.Kind() == reflect.Struct:
			out[key] = redactStruct(fv)
		case fv.Type() == reflect.TypeFor[time.Duration]():
			out[key] = time.Duration(fv.Int()).String()
		case fv.Kind() == reflect.String:
			out[key] = redactString(fv.String(), f.Tag.Get("redact"))
		default:
			out[key] = fv.Interface()
		}
	}
	return out
}

func redactString(s, how string) string {
	switch {
	case s == "":
		return s
	case how == "secret":
		return telemetry.Redacted
	case how == "url":
		return telemetry.RedactURL(s)
	default:
		return s
	}
}
