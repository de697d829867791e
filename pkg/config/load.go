package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// EnvPrefix starts every environment variable the configuration reads.
const EnvPrefix = "MANUSHYA_"

// EnvConfigFile names the YAML file to read when -config is not given.
const EnvConfigFile = EnvPrefix + "CONFIG"

// FlagConfigFile is the flag naming the YAML file to read.
const FlagConfigFile = "config"

// NewFlagSet returns a flag set with a flag per setting plus -config. Commands add
// their own flags (such as -print-config) to it and pass it to LoadFlagSet.
func NewFlagSet(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.String(FlagConfigFile, "", "YAML configuration file (or "+EnvConfigFile+")")
	for _, s := range settings {
		switch def := s.def.(type) {
		case string:
			fs.String(s.key, def, s.usage)
		case bool:
			fs.Bool(s.key, def, s.usage)
		case int:
			fs.Int(s.key, def, s.usage)
		case int64:
			fs.Int64(s.key, def, s.usage)
		case float64:
			fs.Float64(s.key, def, s.usage)
		case time.Duration:
			fs.Duration(s.key, def, s.usage)
		case []string:
			fs.StringSlice(s.key, def, s.usage)
		default:
			panic(fmt.Sprintf("config: setting %s has unsupported type %T", s.key, def))
		}
	}
	return fs
}

// Load reads the configuration from defaults, the YAML file, environ (in
// os.Environ form; nil means an empty environment) and args (the flags, without the
// program and command names). Positional arguments are an error. It does not check
// required values: call Validate with the command's mode.
//
// -help returns an error matching pflag.ErrHelp after printing the flags.
func Load(args, environ []string) (*Config, error) {
	fs := NewFlagSet("manushya")
	cfg, err := LoadFlagSet(fs, args, environ)
	if err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	return cfg, nil
}

// LoadFlagSet is Load with a flag set from NewFlagSet that the caller may have
// added flags to; the caller reads those flags, and any positional arguments, from
// fs afterwards.
func LoadFlagSet(fs *pflag.FlagSet, args, environ []string) (*Config, error) {
	if err := fs.Parse(normalizeArgs(fs, args)); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}

	k := koanf.New(".")
	for _, s := range settings {
		if err := k.Set(s.key, s.def); err != nil {
			return nil, fmt.Errorf("config: default %s: %w", s.key, err)
		}
	}

	path := lookupEnv(environ, EnvConfigFile)
	if f := fs.Lookup(FlagConfigFile); f != nil && f.Changed {
		path = f.Value.String()
	}
	if path != "" {
		if err := loadFile(k, path); err != nil {
			return nil, err
		}
	}

	envProvider := env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		TransformFunc: envTransform,
		EnvironFunc:   func() []string { return environ },
	})
	if err := k.Load(envProvider, nil); err != nil {
		return nil, fmt.Errorf("config: read environment: %w", err)
	}

	// Only flags given on the command line count: their defaults are already in k.
	flagProvider := posflag.ProviderWithFlag(fs, ".", nil, func(f *pflag.Flag) (string, any) {
		if !f.Changed || !knownKeys[f.Name] {
			return "", nil
		}
		return f.Name, posflag.FlagVal(fs, f)
	})
	if err := k.Load(flagProvider, nil); err != nil {
		return nil, fmt.Errorf("config: read flags: %w", err)
	}

	cfg := &Config{File: path}
	err := k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			// Environment values are strings: "20" must become an int, "15s" a
			// duration, "identity,memory" a list.
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				mapstructure.StringToTimeDurationHookFunc(),
				mapstructure.StringToSliceHookFunc(","),
			),
			WeaklyTypedInput: true,
		},
	})
	if err != nil {
		return nil, decodeError(err)
	}

	cfg.Target = cleanList(cfg.Target)
	if cfg.Encryption.KEK == "" {
		// auth.encryption_key is the older name of encryption.kek.
		cfg.Encryption.KEK = cfg.Auth.EncryptionKey
	}
	if cfg.Database.MigrateURL == "" {
		cfg.Database.MigrateURL = cfg.Database.URL
	}
	return cfg, nil
}

// loadFile merges a YAML file into k, rejecting keys that are not settings so that
// a misspelt key fails loudly instead of being ignored.
func loadFile(k *koanf.Koanf, path string) error {
	fk := koanf.New(".")
	if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
		return fmt.Errorf("config: read %s: %w", path, err)
	}
	var unknown []string
	for _, key := range fk.Keys() {
		emptySection := isSection(key) && fk.Get(key) == nil
		if !knownKeys[key] && !emptySection {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("config: %s: unknown settings: %s", path, strings.Join(unknown, ", "))
	}
	if err := k.Merge(fk); err != nil {
		return fmt.Errorf("config: merge %s: %w", path, err)
	}
	return nil
}

// isSection reports whether key is the section part of some setting (an empty
// "services:" in YAML is harmless).
func isSection(key string) bool {
	return slices.ContainsFunc(settings, func(s setting) bool {
		return strings.HasPrefix(s.key, key+".")
	})
}

// envTransform maps MANUSHYA_DATABASE_MIGRATE_URL to database.migrate_url: the
// first word is the section, the rest the field. Variables that are not settings
// (MANUSHYA_CONFIG, test helpers' MANUSHYA_TEST_*) are skipped.
func envTransform(name, value string) (string, any) {
	rest := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
	key := rest
	if section, field, ok := strings.Cut(rest, "_"); ok {
		key = section + "." + field
	}
	if !knownKeys[key] {
		return "", nil
	}
	return key, value
}

// normalizeArgs lets settings be written Go-style with one dash (-target=memory)
// as well as --target: pflag alone would read -target as the shorthands -t -a -r...
func normalizeArgs(fs *pflag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if name == "help" || (len(name) > 1 && fs.Lookup(name) != nil) {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

// decodeError puts mapstructure's multi-line report ("'database.max_conns' cannot
// parse value as 'int'", one line per bad value) on one line, for logs.
func decodeError(err error) error {
	var leaves []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		if w := errors.Unwrap(e); w != nil && strings.HasPrefix(e.Error(), "decoding failed") {
			walk(w)
			return
		}
		leaves = append(leaves, e.Error())
	}
	walk(err)
	return fmt.Errorf("config: %w: %s", ErrInvalidValue, strings.Join(leaves, "; "))
}

// ErrInvalidValue is matched by errors from Load when a value has the wrong type.
var ErrInvalidValue = errors.New("invalid value")

func lookupEnv(environ []string, key string) string {
	var v string
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val // the last one wins, as with the other variables
		}
	}
	return v
}

func cleanList(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
