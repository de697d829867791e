package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/manushya-ai/manushya/cmd/manushya/app"
	"github.com/manushya-ai/manushya/pkg/config"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

const usage = `usage: manushya <command> [flags]

commands:
  serve        run targets (-target=identity,memory,...; default all)
  dev          run everything in one process with embedded NATS; creates a default
               tenant and admin API key on first start
  migrate      apply database migrations (as the schema owner)
  healthcheck  exit 0 when the server at http.addr answers /healthz
  admin        operator commands: "admin bootstrap --slug=<tenant>"
  memory       memory operations: "memory reembed --tenant=<uuid> --model=<name>"
  version      print the version

Run "manushya <command> -help" for the flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return pflag.ErrHelp
	}
	cmd, rest := args[0], args[1:]
	if strings.HasPrefix(cmd, "-") {
		// `manushya -target=identity` means serve.
		cmd, rest = "serve", args
	}
	switch cmd {
	case "serve":
		return serve(ctx, rest, config.ModeServe)
	case "dev":
		return serve(ctx, rest, config.ModeDev)
	case "migrate":
		return migrate(ctx, rest)
	case "healthcheck":
		return healthcheck(ctx, rest)
	case "admin":
		return admin(ctx, rest)
	case "memory":
		return memoryCmd(ctx, rest)
	case "version":
		fmt.Println(version)
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// load reads the configuration for a command; printConfig reports -print-config.
func load(name string, args []string, mode string, extra func(*pflag.FlagSet)) (*config.Config, bool, error) {
	fs := config.NewFlagSet("manushya " + name)
	printConfig := fs.Bool("print-config", false, "print the effective configuration (secrets masked) and exit")
	if extra != nil {
		extra(fs)
	}
	cfg, err := config.LoadFlagSet(fs, args, os.Environ())
	if err != nil {
		return nil, false, err
	}
	if mode == config.ModeDev {
		if err := cfg.PrepareDev(); err != nil {
			return nil, false, err
		}
	}
	if *printConfig {
		b, err := cfg.RedactedYAML()
		if err != nil {
			return nil, false, err
		}
		fmt.Print(string(b))
		return cfg, true, nil
	}
	return cfg, false, cfg.Validate(mode)
}

func serve(ctx context.Context, args []string, mode string) error {
	cfg, printed, err := load(mode, args, mode, nil)
	if err != nil || printed {
		return err
	}
	logger, err := telemetry.NewLogger(cfg.Log.Level, cfg.Log.Format, os.Stderr)
	if err != nil {
		return err
	}
	// Libraries that log through slog's default (goose, for one) log like us.
	slog.SetDefault(logger)
	shutdownTracing, err := telemetry.SetupTracing(ctx, "manushya")
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()
	a := app.New(cfg, mode, logger)
	if mode == config.ModeDev {
		go func() {
			select {
			case <-a.Ready():
				if err := a.Bootstrap(ctx, cfg.Dev.DataDir, os.Stdout); err != nil {
					logger.Error("bootstrap failed", "err", err)
				}
			case <-ctx.Done():
			}
		}()
	}
	return a.Run(ctx)
}

func migrate(ctx context.Context, args []string) error {
	cfg, printed, err := load("migrate", args, config.ModeMigrate, nil)
	if err != nil || printed {
		return err
	}
	url := cfg.Database.MigrateURL
	if url == "" {
		url = cfg.Database.URL
	}
	if err := postgres.Migrate(ctx, url, cfg.Database.AppRole, app.AllMigrations()...); err != nil {
		return err
	}
	fmt.Println("migrations applied")
	return nil
}

func healthcheck(ctx context.Context, args []string) error {
	cfg, printed, err := load("healthcheck", args, config.ModeMigrate, nil)
	if printed {
		return nil
	}
	if cfg == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addr := cfg.HTTP.Addr
	if strings.HasPrefix(addr, ":") || strings.HasPrefix(addr, "0.0.0.0:") {
		addr = "127.0.0.1" + addr[strings.LastIndex(addr, ":"):]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	return nil
}

func admin(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "bootstrap" {
		return fmt.Errorf("usage: manushya admin bootstrap --slug=<tenant> [--name=<name>]")
	}
	var slug, name string
	cfg, printed, err := load("admin bootstrap", args[1:], config.ModeMigrate, func(fs *pflag.FlagSet) {
		fs.StringVar(&slug, "slug", "", "slug of the tenant to create")
		fs.StringVar(&name, "name", "", "display name of the tenant (default: the slug)")
	})
	if err != nil || printed {
		return err
	}
	if slug == "" {
		return fmt.Errorf("admin bootstrap: --slug is required")
	}
	if name == "" {
		name = slug
	}
	if len(cfg.Auth.APIKeyPepper) < config.MinSecretBytes {
		return fmt.Errorf("admin bootstrap: auth.api_key_pepper must be set (at least %d bytes), the same as the servers'", config.MinSecretBytes)
	}
	logger, err := telemetry.NewLogger(cfg.Log.Level, cfg.Log.Format, os.Stderr)
	if err != nil {
		return err
	}
	res, err := app.BootstrapTenant(ctx, cfg, logger, slug, name)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
