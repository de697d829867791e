package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults applied by Connect when the URL does not say otherwise.
const (
	defaultApplicationName = "manushya"
	// Without a connect timeout a dial to an unreachable host hangs until the TCP stack
	// gives up, which can be minutes; a readiness probe wants an answer sooner.
	defaultConnectTimeout = 10 * time.Second
	// Spreads connection recycling out so a pool does not reconnect all at once.
	defaultMaxConnLifetimeJitter = 5 * time.Minute
	defaultPingTimeout           = 5 * time.Second
)

// Option adjusts a pool's configuration before it opens.
type Option func(url string, cfg *pgxpool.Config)

// WithMaxConns sizes the pool, unless the URL sets pool_max_conns itself.
func WithMaxConns(n int) Option {
	return func(url string, cfg *pgxpool.Config) {
		if n > 0 && !strings.Contains(url, "pool_max_conns") {
			cfg.MaxConns = int32(min(n, math.MaxInt32))
		}
	}
}

// Connect opens a pgx pool for url, pings it and returns it. Pool settings given in the
// URL (pool_max_conns, connect_timeout, application_name, ...) win over the defaults.
func Connect(ctx context.Context, url string, opts ...Option) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, parseError(err)
	}
	for _, o := range opts {
		o(url, cfg)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = defaultApplicationName
	}
	if cfg.MaxConnLifetimeJitter == 0 {
		cfg.MaxConnLifetimeJitter = defaultMaxConnLifetimeJitter
	}
	if cfg.PingTimeout == 0 {
		cfg.PingTimeout = defaultPingTimeout
	}

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool %s: %w", describe(cfg), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s: %w", describe(cfg), err)
	}
	return pool, nil
}

// parseError reports a connection string that does not parse without quoting it: pgx
// masks passwords only on a best-effort basis, and a malformed URL is where that fails.
func parseError(err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return fmt.Errorf("parse database url: invalid connection string: %w", inner)
	}
	return errors.New("parse database url: invalid connection string")
}

// describe names a connection target for errors and logs without its password.
func describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// CheckAppRole returns an error when the pool's role would not be subject to row-level
// security (a superuser or a role with BYPASSRLS), so a misconfigured service refuses to
// start instead of serving every tenant's rows.
func CheckAppRole(ctx context.Context, pool *pgxpool.Pool) error {
	var (
		role                 string
		superuser, bypassRLS bool
	)
	err := pool.QueryRow(ctx,
		`SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`,
	).Scan(&role, &superuser, &bypassRLS)
	if err != nil {
		return fmt.Errorf("check database role: %w", err)
	}
	switch {
	case superuser:
		return fmt.Errorf("database role %q is a superuser, so row-level security would not apply; connect as the app role (manushya_app)", role)
	case bypassRLS:
		return fmt.Errorf("database role %q has BYPASSRLS, so row-level security would not apply; connect as the app role (manushya_app)", role)
	}
	return nil
}

// SuperuserSetupSQL is what a superuser runs once per database before migrations:
// the pgvector extension, and LEAKPROOF on the operators of keyword search
// (tsvector @@ tsquery) and metadata filters (jsonb @>). Under row-level security
// PostgreSQL uses an index for a condition only when its function is leakproof, so
// without it the GIN indexes on those columns are never used. Neither function raises
// data-dependent errors. scripts/provision-db.sh runs the same statements.
const SuperuserSetupSQL = `CREATE EXTENSION IF NOT EXISTS vector;
ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF;
ALTER FUNCTION pg_catalog.jsonb_contains(jsonb, jsonb) LEAKPROOF;`
