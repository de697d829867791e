package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/config"
)

const pepper = "0123456789abcdef0123456789abcdef"

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manushya.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(nil, nil)
	require.NoError(t, err)
	require.Equal(t, &config.Config{
		Target:   []string{"all"},
		Log:      config.LogConfig{Level: "info", Format: "json"},
		GRPC:     config.GRPCConfig{Addr: "127.0.0.1:9090"},
		HTTP:     config.HTTPConfig{Addr: "127.0.0.1:8080", MaxBodyBytes: 1 << 20, ShutdownTimeout: 15 * time.Second},
		Database: config.DatabaseConfig{AppRole: "manushya_app", MaxConns: 20},
		NATS:     config.NATSConfig{EmbeddedDir: ".manushya/nats"},
		Auth: config.AuthConfig{
			TokenIssuer: "manushya", TokenAudience: "manushya", AccessTokenTTL: 15 * time.Minute,
			SessionTTL: 30 * 24 * time.Hour, MFAIssuer: "Manushya",
		},
		Invitations: config.InvitationsConfig{
			AcceptURL: "http://127.0.0.1:8080/accept-invitation?token={token}", TTL: 7 * 24 * time.Hour,
		},
		SMTP: config.SMTPConfig{Port: 587, From: "Manushya <no-reply@localhost>", TLSMode: "starttls"},
		Embedding: config.EmbeddingConfig{
			Fallback: []string{}, CacheTTL: 24 * time.Hour, MaxTexts: 2048, MaxTextChars: 100000,
			UsageFlushInterval: 5 * time.Second,
		},
		Memory: config.MemoryConfig{
			MaxTextBytes: 100000, WaitLimit: 5 * time.Second, EmbedBatchSize: 64, EmbedConcurrency: 4,
			SweepInterval: 5 * time.Second, IndexInterval: time.Second, EfSearch: 250, ExactScanRows: 10000,
			ConversionSettle: time.Minute,
		},
		Encryption: config.EncryptionConfig{CacheTTL: 30 * time.Second, ReencryptInterval: 10 * time.Minute, DEKRotation: 90 * 24 * time.Hour},
		SSO:        config.SSOConfig{AllowedAddresses: []string{}},
		Webhooks:   config.WebhooksConfig{AllowedAddresses: []string{}},
		RateLimit:  config.RateLimitConfig{Fallback: "local"},
		Dev:        config.DevConfig{DataDir: ".manushya"},
	}, cfg)
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	path := writeFile(t, `
log:
  level: debug        # overridden by env, then by the flag
  format: text        # file only
grpc:
  addr: 0.0.0.0:9191  # overridden by env
database:
  max_conns: 5        # file only
target: [identity, memory]
`)
	environ := []string{
		"MANUSHYA_CONFIG=" + path,
		"MANUSHYA_LOG_LEVEL=warn",
		"MANUSHYA_GRPC_ADDR=0.0.0.0:9292",
		"PATH=/usr/bin",
	}
	cfg, err := config.Load([]string{"--log.level", "error"}, environ)
	require.NoError(t, err)
	require.Equal(t, path, cfg.File)
	require.Equal(t, "error", cfg.Log.Level)
	require.Equal(t, "text", cfg.Log.Format)
	require.Equal(t, "0.0.0.0:9292", cfg.GRPC.Addr)
	require.Equal(t, 5, cfg.Database.MaxConns)
	require.Equal(t, []string{"identity", "memory"}, cfg.Target)
	require.Equal(t, "127.0.0.1:8080", cfg.HTTP.Addr, "untouched settings keep their defaults")

	// The flag's default must not override the file or the environment.
	cfg, err = config.Load(nil, environ)
	require.NoError(t, err)
	require.Equal(t, "warn", cfg.Log.Level)
}

func TestConfigFlagWinsOverEnv(t *testing.T) {
	t.Parallel()
	fromEnv := writeFile(t, "log: {level: debug}\n")
	fromFlag := writeFile(t, "log: {level: warn}\n")
	cfg, err := config.Load([]string{"-config", fromFlag}, []string{"MANUSHYA_CONFIG=" + fromEnv})
	require.NoError(t, err)
	require.Equal(t, "warn", cfg.Log.Level)
	require.Equal(t, fromFlag, cfg.File)
}

func TestEnvMapping(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(nil, []string{
		"MANUSHYA_TARGET=identity, memory,,gateway",
		"MANUSHYA_DATABASE_URL=postgres://app:pw@db/manushya",
		"MANUSHYA_DATABASE_MIGRATE_URL=postgres://owner:pw@db/manushya",
		"MANUSHYA_DATABASE_APP_ROLE=app",
		"MANUSHYA_DATABASE_MAX_CONNS=7",
		"MANUSHYA_HTTP_MAX_BODY_BYTES=2048",
		"MANUSHYA_HTTP_SHUTDOWN_TIMEOUT=1m30s",
		"MANUSHYA_SERVICES_IDENTITY_ADDR=identity:9090",
		"MANUSHYA_AUTH_API_KEY_PEPPER=" + pepper,
		"MANUSHYA_DEV_DATA_DIR=/var/lib/manushya",
		"MANUSHYA_TEST_REDIS_URL=redis://ignored", // not a setting: ignored
	})
	require.NoError(t, err)
	require.Equal(t, []string{"identity", "memory", "gateway"}, cfg.Target)
	require.Equal(t, "postgres://app:pw@db/manushya", cfg.Database.URL)
	require.Equal(t, "postgres://owner:pw@db/manushya", cfg.Database.MigrateURL)
	require.Equal(t, "app", cfg.Database.AppRole)
	require.Equal(t, 7, cfg.Database.MaxConns)
	require.Equal(t, int64(2048), cfg.HTTP.MaxBodyBytes)
	require.Equal(t, 90*time.Second, cfg.HTTP.ShutdownTimeout)
	require.Equal(t, "identity:9090", cfg.Services.IdentityAddr)
	require.Equal(t, pepper, cfg.Auth.APIKeyPepper)
	require.Equal(t, "/var/lib/manushya", cfg.Dev.DataDir)
	require.Empty(t, cfg.Redis.URL)
}

// The memory section from a file, then the environment over it, then a flag:
// every key reaches MemoryConfig.
func TestMemorySettings(t *testing.T) {
	t.Parallel()
	path := writeFile(t, `
memory:
  embedding_model: bge-small
  max_text_bytes: 2000
  wait_limit: 2s
  embed_batch_size: 128
  embed_concurrency: 8
  sweep_interval: 10s
  index_interval: 500ms
  ef_search: 300    # overridden by env
  exact_scan_rows: 5000
  conversion_settle: 2m
`)
	cfg, err := config.Load([]string{"--memory.exact_scan_rows=2500"}, []string{
		"MANUSHYA_CONFIG=" + path,
		"MANUSHYA_MEMORY_EF_SEARCH=400",
		"MANUSHYA_DATABASE_URL=postgres://app@db/manushya",
	})
	require.NoError(t, err)
	require.Equal(t, config.MemoryConfig{
		EmbeddingModel: "bge-small", MaxTextBytes: 2000, WaitLimit: 2 * time.Second, EmbedBatchSize: 128,
		EmbedConcurrency: 8, SweepInterval: 10 * time.Second, IndexInterval: 500 * time.Millisecond,
		EfSearch: 400, ExactScanRows: 2500, ConversionSettle: 2 * time.Minute,
	}, cfg.Memory)
	require.NoError(t, cfg.Validate(config.ModeDev))

	cfg, err = config.Load(nil, []string{
		"MANUSHYA_MEMORY_EMBEDDING_MODEL=text-embedding-3-small",
		"MANUSHYA_MEMORY_MAX_TEXT_BYTES=100",
		"MANUSHYA_MEMORY_WAIT_LIMIT=30s",
		"MANUSHYA_MEMORY_EMBED_BATCH_SIZE=16",
		"MANUSHYA_MEMORY_EMBED_CONCURRENCY=2",
		"MANUSHYA_MEMORY_SWEEP_INTERVAL=1m",
		"MANUSHYA_MEMORY_INDEX_INTERVAL=2s",
		"MANUSHYA_MEMORY_EXACT_SCAN_ROWS=1",
		"MANUSHYA_MEMORY_CONVERSION_SETTLE=10s",
	})
	require.NoError(t, err)
	require.Equal(t, config.MemoryConfig{
		EmbeddingModel: "text-embedding-3-small", MaxTextBytes: 100, WaitLimit: 30 * time.Second, EmbedBatchSize: 16,
		EmbedConcurrency: 2, SweepInterval: time.Minute, IndexInterval: 2 * time.Second,
		EfSearch: 250, ExactScanRows: 1, ConversionSettle: 10 * time.Second,
	}, cfg.Memory)

	_, err = config.Load(nil, []string{"MANUSHYA_MEMORY_EF_SEARCH=lots"})
	require.ErrorIs(t, err, config.ErrInvalidValue)
	require.ErrorContains(t, err, "memory.ef_search")
	_, err = config.Load([]string{"-config", writeFile(t, "memory:\n  ef_serach: 10\n")}, nil) //nolint:misspell // the typo is the point
	require.ErrorContains(t, err, "unknown settings: memory.ef_serach")
}

func TestMigrateURLDefaultsToURL(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load([]string{"--database.url=postgres://app@db/m"}, nil)
	require.NoError(t, err)
	require.Equal(t, "postgres://app@db/m", cfg.Database.MigrateURL)
}

func TestFlags(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load([]string{
		"-target=identity,memory",
		"-grpc.addr", ":0",
		"--http.shutdown_timeout=2s",
		"--database.max_conns", "3",
	}, []string{"MANUSHYA_TARGET=usage"})
	require.NoError(t, err)
	require.Equal(t, []string{"identity", "memory"}, cfg.Target)
	require.Equal(t, ":0", cfg.GRPC.Addr)
	require.Equal(t, 2*time.Second, cfg.HTTP.ShutdownTimeout)
	require.Equal(t, 3, cfg.Database.MaxConns)
}

func TestLoadFlagSetWithCommandFlags(t *testing.T) {
	t.Parallel()
	fs := config.NewFlagSet("serve")
	printConfig := fs.Bool("print-config", false, "print the configuration and exit")
	cfg, err := config.LoadFlagSet(fs, []string{"-print-config", "-log.format=text", "extra"}, nil)
	require.NoError(t, err)
	require.True(t, *printConfig)
	require.Equal(t, "text", cfg.Log.Format)
	require.Equal(t, []string{"extra"}, fs.Args())
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		args    []string
		environ []string
		want    string
	}{
		"unknown flag":      {args: []string{"--nope=1"}, want: "unknown flag: --nope"},
		"positional":        {args: []string{"serve"}, want: `unexpected argument "serve"`},
		"bad env number":    {environ: []string{"MANUSHYA_DATABASE_MAX_CONNS=lots"}, want: "database.max_conns"},
		"bad env duration":  {environ: []string{"MANUSHYA_HTTP_SHUTDOWN_TIMEOUT=soon"}, want: "http.shutdown_timeout"},
		"missing file":      {args: []string{"-config", "/nonexistent/manushya.yaml"}, want: "/nonexistent/manushya.yaml"},
		"bad flag duration": {args: []string{"--http.shutdown_timeout=soon"}, want: "http.shutdown_timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(tc.args, tc.environ)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestInvalidValueIsMatchable(t *testing.T) {
	t.Parallel()
	_, err := config.Load(nil, []string{"MANUSHYA_DATABASE_MAX_CONNS=lots", "MANUSHYA_HTTP_MAX_BODY_BYTES=big"})
	require.ErrorIs(t, err, config.ErrInvalidValue)
	require.ErrorContains(t, err, "database.max_conns")
	require.ErrorContains(t, err, "http.max_body_bytes")
	require.NotContains(t, err.Error(), "\n")
}

func TestUnknownFileKeys(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "databse:\n  url: x\nlog:\n  levle: debug\nservices:\n") //nolint:misspell // the typos are what the test is about
	_, err := config.Load([]string{"--config=" + path}, nil)
	require.ErrorContains(t, err, "unknown settings: databse.url, log.levle")
}

func TestHelp(t *testing.T) {
	t.Parallel()
	fs := config.NewFlagSet("manushya")
	fs.SetOutput(nopWriter{})
	_, err := config.LoadFlagSet(fs, []string{"-help"}, nil)
	require.ErrorIs(t, err, pflag.ErrHelp)
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

func validServe() *config.Config {
	cfg, err := config.Load(nil, []string{
		"MANUSHYA_DATABASE_URL=postgres://manushya_app:pw@127.0.0.1:5432/manushya?sslmode=disable",
		"MANUSHYA_NATS_URL=nats://127.0.0.1:4222",
		"MANUSHYA_AUTH_API_KEY_PEPPER=" + pepper,
	})
	if err != nil {
		panic(err)
	}
	return cfg
}

func TestValidateAcceptsGoodConfigs(t *testing.T) {
	t.Parallel()
	require.NoError(t, validServe().Validate(config.ModeServe))

	cfg := validServe()
	cfg.NATS.URL = ""
	cfg.Auth.APIKeyPepper = ""
	require.NoError(t, cfg.Validate(config.ModeDev), "dev embeds NATS and generates the pepper")

	cfg = validServe()
	cfg.Redis.URL = "rediss://:pw@cache:6380/1"
	cfg.NATS.URL = "nats://a:4222, tls://b:4222,c:4222"
	cfg.Database.MigrateURL = "host=db user=owner password=x dbname=manushya"
	cfg.Services = config.ServicesConfig{
		IdentityAddr:  "identity:9090",
		MemoryAddr:    "dns:///memory.manushya.svc:9090",
		EmbeddingAddr: "unix:///run/embedding.sock",
		PolicyAddr:    "[::1]:9090",
	}
	require.NoError(t, cfg.Validate(config.ModeServe))

	// The memory settings' bounds are themselves accepted.
	cfg = validServe()
	cfg.Memory = config.MemoryConfig{
		MaxTextBytes: 1, WaitLimit: time.Minute, EmbedBatchSize: 2048, EmbedConcurrency: 64,
		SweepInterval: 100 * time.Millisecond, IndexInterval: 100 * time.Millisecond, EfSearch: 1000,
		ExactScanRows: 1000000, ConversionSettle: 10 * time.Second,
	}
	require.NoError(t, cfg.Validate(config.ModeServe))
	cfg.Memory = config.MemoryConfig{
		MaxTextBytes: 400000, WaitLimit: time.Nanosecond, EmbedBatchSize: 1, EmbedConcurrency: 1,
		SweepInterval: time.Hour, IndexInterval: time.Hour, EfSearch: 1, ExactScanRows: 1, ConversionSettle: 24 * time.Hour,
	}
	require.NoError(t, cfg.Validate(config.ModeServe))
}

func TestValidateReportsEverything(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(nil, nil)
	require.NoError(t, err)
	cfg.GRPC.Addr = "x"
	cfg.Log.Level = "verbose"

	err = cfg.Validate(config.ModeServe)
	var verr *config.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, []string{
		"log.level: must be one of debug, info, warn, error",
		`grpc.addr: invalid address "x"`,
		"database.url: required",
		"nats.url: required (the embedded server runs only in dev)",
		"auth.api_key_pepper: required",
	}, messages(verr))

	var ferr *config.FieldError
	require.ErrorAs(t, err, &ferr)
	require.Equal(t, "log.level", ferr.Key)
}

func TestValidateValues(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		mode   string
		mutate func(*config.Config)
		want   []string
	}{
		"addresses": {config.ModeServe, func(c *config.Config) {
			c.HTTP.Addr = "localhost"
			c.GRPC.Addr = "127.0.0.1:99999"
			c.Services.MemoryAddr = "memory"
		}, []string{
			`grpc.addr: invalid address "127.0.0.1:99999"`,
			`http.addr: invalid address "localhost"`,
			`services.memory_addr: invalid address "memory"`,
		}},
		"limits": {config.ModeServe, func(c *config.Config) {
			c.HTTP.MaxBodyBytes = 0
			c.HTTP.ShutdownTimeout = 0
			c.Database.MaxConns = 0
			c.Target = nil
			c.Log.Format = "xml"
		}, []string{
			"log.format: must be one of json, text",
			"target: required",
			"http.max_body_bytes: must be positive",
			"http.shutdown_timeout: must be positive",
			"database.max_conns: must be at least 1",
		}},
		"urls": {config.ModeServe, func(c *config.Config) {
			c.Database.URL = "mysql://root:hunter2@db/x"
			c.Redis.URL = "http://cache"
			c.NATS.URL = "nats://ok:4222,amqp://bad"
			c.Database.AppRole = "App-Role"
		}, []string{
			"database.url: URL scheme must be postgres or postgresql",
			"database.app_role: must be a lower-case SQL identifier",
			"nats.url: URL scheme must be nats or tls or ws or wss",
			"redis.url: URL scheme must be redis or rediss or unix",
		}},
		"memory below its bounds": {config.ModeServe, func(c *config.Config) {
			c.Memory = config.MemoryConfig{
				WaitLimit: -time.Second, SweepInterval: 99 * time.Millisecond, IndexInterval: time.Millisecond,
				ConversionSettle: 9 * time.Second,
			}
		}, []string{
			"memory.max_text_bytes: must be between 1 and 400000",
			"memory.wait_limit: must be positive and at most 1m0s",
			"memory.embed_batch_size: must be between 1 and 2048",
			"memory.embed_concurrency: must be between 1 and 64",
			"memory.sweep_interval: must be at least 100ms",
			"memory.index_interval: must be at least 100ms",
			"memory.ef_search: must be between 1 and 1000",
			"memory.exact_scan_rows: must be between 1 and 1000000",
			"memory.conversion_settle: must be at least 10s",
		}},
		"memory above its bounds": {config.ModeDev, func(c *config.Config) {
			c.Memory.MaxTextBytes = 400001
			c.Memory.WaitLimit = time.Minute + time.Millisecond
			c.Memory.EmbedBatchSize = 2049
			c.Memory.EmbedConcurrency = 65
			c.Memory.EfSearch = 1001
			c.Memory.ExactScanRows = 1000001
		}, []string{
			"memory.max_text_bytes: must be between 1 and 400000",
			"memory.wait_limit: must be positive and at most 1m0s",
			"memory.embed_batch_size: must be between 1 and 2048",
			"memory.embed_concurrency: must be between 1 and 64",
			"memory.ef_search: must be between 1 and 1000",
			"memory.exact_scan_rows: must be between 1 and 1000000",
		}},
		"short secrets": {config.ModeServe, func(c *config.Config) {
			c.Auth.APIKeyPepper = "hunter2"
		}, []string{
			"auth.api_key_pepper: must be at least 32 bytes",
		}},
		"dev needs a nats dir when embedded": {config.ModeDev, func(c *config.Config) {
			c.NATS.URL = ""
			c.NATS.EmbeddedDir = ""
			c.Dev.DataDir = ""
		}, []string{
			"nats.embedded_dir: required when nats.url is empty",
			"dev.data_dir: required",
		}},
		"migrate checks only the database": {config.ModeMigrate, func(c *config.Config) {
			c.GRPC.Addr = "x"
			c.NATS.URL = ""
			c.Auth.APIKeyPepper = ""
			c.Database.URL = ""
			c.Database.MigrateURL = ""
		}, []string{
			"database.migrate_url: required (or set database.url)",
		}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := validServe()
			tc.mutate(cfg)
			var verr *config.ValidationError
			require.ErrorAs(t, cfg.Validate(tc.mode), &verr)
			require.Equal(t, tc.want, messages(verr))
			require.NotContains(t, verr.Error(), "hunter")
		})
	}
}

func TestValidateUnknownMode(t *testing.T) {
	t.Parallel()
	require.ErrorContains(t, validServe().Validate("serv"), `unknown mode "serv"`)
}

func messages(verr *config.ValidationError) []string {
	var out []string
	for _, p := range verr.Problems {
		out = append(out, p.Error())
	}
	return out
}

func TestRedacted(t *testing.T) {
	t.Parallel()
	cfg := validServe()
	cfg.Redis.URL = "redis://:cachepw@cache:6379/0"

	r := cfg.Redacted()
	require.Equal(t, []string{"all"}, r["target"])
	require.Equal(t, map[string]any{
		"url":         "postgres://manushya_app:****@127.0.0.1:5432/manushya?sslmode=disable",
		"migrate_url": "postgres://manushya_app:****@127.0.0.1:5432/manushya?sslmode=disable",
		"app_role":    "manushya_app",
		"max_conns":   20,
	}, r["database"])
	require.Equal(t, map[string]any{
		"api_key_pepper": "****", "encryption_key": "", "token_issuer": "manushya", "token_audience": "manushya",
		"access_token_ttl": "15m0s", "session_ttl": "720h0m0s", "mfa_issuer": "Manushya",
	}, r["auth"])
	require.Equal(t, "redis://:****@cache:6379/0", r["redis"].(map[string]any)["url"])
	require.Equal(t, "15s", r["http"].(map[string]any)["shutdown_timeout"])
	require.Equal(t, map[string]any{
		"embedding_model": "", "max_text_bytes": 100000, "wait_limit": "5s", "embed_batch_size": 64,
		"embed_concurrency": 4, "sweep_interval": "5s", "index_interval": "1s", "ef_search": 250,
		"exact_scan_rows": 10000, "conversion_settle": "1m0s",
	}, r["memory"])
	require.NotContains(t, r, "File")

	// The printed YAML loads back to the same (masked) configuration.
	out, err := cfg.RedactedYAML()
	require.NoError(t, err)
	require.NotContains(t, string(out), pepper)
	require.NotContains(t, string(out), "cachepw")
	path := writeFile(t, string(out))
	back, err := config.Load([]string{"-config", path}, nil)
	require.NoError(t, err)
	require.Equal(t, r, back.Redacted())
}

func TestServiceAddr(t *testing.T) {
	t.Parallel()
	cfg := validServe()
	cfg.Services.MemoryAddr = "memory:9090"
	require.Equal(t, "memory:9090", cfg.ServiceAddr(config.ServiceMemory))
	require.Equal(t, "127.0.0.1:9090", cfg.ServiceAddr(config.ServiceIdentity))
	require.Panics(t, func() { cfg.ServiceAddr("billing") })
}

func TestPrepareDev(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	cfg := &config.Config{Dev: config.DevConfig{DataDir: dir}}
	require.NoError(t, cfg.PrepareDev())
	require.GreaterOrEqual(t, len(cfg.Auth.APIKeyPepper), config.MinSecretBytes)

	info, err := os.Stat(filepath.Join(dir, config.DevPepperFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	// A restart reads the same pepper back.
	again := &config.Config{Dev: config.DevConfig{DataDir: dir}}
	require.NoError(t, again.PrepareDev())
	require.Equal(t, cfg.Auth.APIKeyPepper, again.Auth.APIKeyPepper)

	// A configured pepper is kept.
	set := &config.Config{Dev: config.DevConfig{DataDir: dir}, Auth: config.AuthConfig{APIKeyPepper: pepper}}
	require.NoError(t, set.PrepareDev())
	require.Equal(t, pepper, set.Auth.APIKeyPepper)

	// A damaged file is reported, not silently replaced.
	bad := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bad, config.DevPepperFile), []byte("short"), 0o600))
	err = (&config.Config{Dev: config.DevConfig{DataDir: bad}}).PrepareDev()
	require.ErrorContains(t, err, "shorter than 32 bytes")
	require.NotErrorIs(t, err, os.ErrNotExist)
}
