package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
)

// Migrations is one service's schema: goose SQL files (NNNNN_name.sql with
// "-- +goose Up" and "-- +goose Down" sections) at the root of FS, applied into Schema.
type Migrations struct {
	// Schema is the PostgreSQL schema the migrations create their objects in; lower case
	// letters, digits and underscores.
	Schema string
	// FS holds the migration files at its root (use fs.Sub for an embedded folder).
	FS fs.FS
}

// versionTable is goose's bookkeeping table, one per schema so services migrate
// independently.
const versionTable = "goose_db_version"

// migrateLockKey is the advisory lock Migrate holds for its whole run ("manushya" in
// ASCII). Advisory locks are per database, so it only serializes migrations of the
// same database.
const migrateLockKey int64 = 0x6d616e7573687961

// schemaNamePattern keeps schema names to plain identifiers: goose splices the version
// table name into its SQL unquoted, and plain names need no quoting in hand-written SQL.
var schemaNamePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (m Migrations) validate() error {
	if !schemaNamePattern.MatchString(m.Schema) || strings.HasPrefix(m.Schema, "pg_") {
		return fmt.Errorf("invalid schema name %q: want lower case letters, digits and underscores, not starting with pg_", m.Schema)
	}
	if m.FS == nil {
		return fmt.Errorf("schema %s: no migration files (FS is nil)", m.Schema)
	}
	return nil
}

// Versions returns the versions of the migration files in m, in ascending order.
func (m Migrations) Versions() ([]int64, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	names, err := fs.Glob(m.FS, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("schema %s: list migration files: %w", m.Schema, err)
	}
	versions := make([]int64, 0, len(names))
	for _, name := range names {
		v, err := goose.NumericComponent(name)
		if err != nil {
			return nil, fmt.Errorf("schema %s: migration file %s: %w", m.Schema, name, err)
		}
		versions = append(versions, v)
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("schema %s: no migration files", m.Schema)
	}
	slices.Sort(versions)
	return versions, nil
}

// Migrate applies every set, each into its own schema with its own version table
// (<schema>.goose_db_version), connecting as ownerURL, the role that owns the tables.
// It then grants appRole USAGE on each schema, SELECT/INSERT/UPDATE/DELETE on its tables
// and USAGE/SELECT on its sequences, now and for tables created later, and read-only
// access to the version table so CheckSchema works. appRole must be a different role
// from the owner: an owner could switch row-level security off.
//
// Concurrent runs against the same database (from any number of processes) wait for
// each other on an advisory lock; the later ones find nothing to do.
func Migrate(ctx context.Context, ownerURL, appRole string, sets ...Migrations) error {
	if appRole == "" {
		return errors.New("migrate: the app role is empty")
	}
	seen := make(map[string]bool, len(sets))
	for _, set := range sets {
		if err := set.validate(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if seen[set.Schema] {
			return fmt.Errorf("migrate: schema %s is listed twice", set.Schema)
		}
		seen[set.Schema] = true
	}

	connCfg, err := pgx.ParseConfig(ownerURL)
	if err != nil {
		return fmt.Errorf("migrate: %w", parseError(err))
	}
	if connCfg.ConnectTimeout == 0 {
		connCfg.ConnectTimeout = defaultConnectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, connCfg)
	if err != nil {
		return fmt.Errorf("migrate: connect as owner %s@%s:%d/%s: %w",
			connCfg.User, connCfg.Host, connCfg.Port, connCfg.Database, err)
	}
	// Closing the session also releases the advisory lock, on every path out.
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
		return fmt.Errorf("migrate: take migration lock: %w", err)
	}
	if err := checkRoles(ctx, conn, appRole); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, set := range sets {
		if err := migrateSet(ctx, conn, connCfg, set); err != nil {
			return err
		}
		if err := grantApp(ctx, conn, set.Schema, appRole); err != nil {
			return err
		}
	}
	return nil
}

func checkRoles(ctx context.Context, conn *pgx.Conn, appRole string) error {
	var (
		owner     string
		appExists bool
	)
	err := conn.QueryRow(ctx,
		`SELECT current_user, EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, appRole,
	).Scan(&owner, &appExists)
	if err != nil {
		return fmt.Errorf("check roles: %w", err)
	}
	if !appExists {
		return fmt.Errorf("app role %q does not exist (make setup creates it)", appRole)
	}
	if owner == appRole {
		return fmt.Errorf("connected as the app role %q: migrations must run as the owner role so the app role owns no tables", appRole)
	}
	return nil
}

func migrateSet(ctx context.Context, conn *pgx.Conn, connCfg *pgx.ConnConfig, set Migrations) error {
	schema := pgx.Identifier{set.Schema}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
		return fmt.Errorf("migrate schema %s: create schema: %w", set.Schema, err)
	}

	// Unqualified names in the migration files land in the service's schema; public
	// stays on the path for extension types such as pgvector's vector.
	cfg := connCfg.Copy()
	cfg.RuntimeParams["search_path"] = schema + ", public"
	db := stdlib.OpenDB(*cfg)
	defer func() { _ = db.Close() }()

	store, err := database.NewStore(database.DialectPostgres, set.Schema+"."+versionTable)
	if err != nil {
		return fmt.Errorf("migrate schema %s: %w", set.Schema, err)
	}
	provider, err := goose.NewProvider(goose.DialectCustom, db, set.FS,
		goose.WithStore(store),
		goose.WithDisableGlobalRegistry(true),
		goose.WithLogger(goose.NopLogger()),
	)
	if err != nil {
		return fmt.Errorf("migrate schema %s: load migrations: %w", set.Schema, err)
	}

	results, err := provider.Up(ctx)
	if partial, ok := errors.AsType[*goose.PartialError](err); ok {
		logApplied(ctx, set.Schema, partial.Applied)
		return fmt.Errorf("migrate schema %s: file %s: %w",
			set.Schema, path.Base(partial.Failed.Source.Path), partial.Err)
	}
	if err != nil {
		return fmt.Errorf("migrate schema %s: %w", set.Schema, err)
	}
	logApplied(ctx, set.Schema, results)
	return nil
}

func logApplied(ctx context.Context, schema string, results []*goose.MigrationResult) {
	for _, r := range results {
		slog.InfoContext(ctx, "migration applied",
			"schema", schema,
			"version", r.Source.Version,
			"file", path.Base(r.Source.Path),
			"duration", r.Duration,
		)
	}
}

// grantApp gives the app role data access to a schema and nothing more: no CREATE, no
// ownership, and no writes to the version table.
func grantApp(ctx context.Context, conn *pgx.Conn, schemaName, appRole string) error {
	schema := pgx.Identifier{schemaName}.Sanitize()
	role := pgx.Identifier{appRole}.Sanitize()
	versions := pgx.Identifier{schemaName, versionTable}.Sanitize()
	sql := strings.Join([]string{
		"GRANT USAGE ON SCHEMA " + schema + " TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + schema + " TO " + role,
		"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA " + schema + " TO " + role,
		"ALTER DEFAULT PRIVILEGES IN SCHEMA " + schema + " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO " + role,
		"ALTER DEFAULT PRIVILEGES IN SCHEMA " + schema + " GRANT USAGE, SELECT ON SEQUENCES TO " + role,
		"REVOKE INSERT, UPDATE, DELETE ON " + versions + " FROM " + role,
	}, ";\n")
	// Without arguments pgx sends this as one simple-protocol message, which PostgreSQL
	// runs as a single transaction.
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("migrate schema %s: grant access to %s: %w", schemaName, appRole, err)
	}
	return nil
}

// CheckSchema verifies, at service start, that every migration embedded in the binary
// for each set has been applied. A database ahead of the binary passes: during a rolling
// upgrade old pods keep running against the migrated schema, which migrations are
// written to allow. The error names each schema that is behind, the version found and
// the version wanted.
func CheckSchema(ctx context.Context, pool *pgxpool.Pool, sets ...Migrations) error {
	var errs []error
	for _, set := range sets {
		if err := checkSet(ctx, pool, set); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkSet(ctx context.Context, pool *pgxpool.Pool, set Migrations) error {
	want, err := set.Versions()
	if err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	applied, err := appliedVersions(ctx, pool, set.Schema)
	if err != nil {
		return err
	}
	var found int64
	for v := range applied {
		found = max(found, v)
	}
	var missing []int64
	for _, v := range want {
		if !applied[v] {
			missing = append(missing, v)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	latest := want[len(want)-1]
	if found >= latest {
		// Out of order: something older than the newest applied version is missing.
		return fmt.Errorf("schema %s is at version %d but lacks versions %v that this binary needs; run `manushya migrate`",
			set.Schema, found, missing)
	}
	return fmt.Errorf("schema %s is at version %d, this binary needs version %d; run `manushya migrate`",
		set.Schema, found, latest)
}

// appliedVersions reads the versions goose recorded as applied; a missing version table
// means nothing was applied.
func appliedVersions(ctx context.Context, pool *pgxpool.Pool, schema string) (map[int64]bool, error) {
	// goose deletes a version's row when it is rolled back, but older goose releases
	// appended is_applied = false instead, so the latest row per version decides.
	rows, err := pool.Query(ctx, `SELECT DISTINCT ON (version_id) version_id, is_applied
FROM `+pgx.Identifier{schema, versionTable}.Sanitize()+`
WHERE version_id > 0
ORDER BY version_id, id DESC`)
	if err != nil {
		return versionsError(schema, err)
	}
	applied := make(map[int64]bool)
	var (
		v  int64
		ok bool
	)
	_, err = pgx.ForEachRow(rows, []any{&v, &ok}, func() error {
		if ok {
			applied[v] = true
		}
		return nil
	})
	if err != nil {
		return versionsError(schema, err)
	}
	return applied, nil
}

func versionsError(schema string, err error) (map[int64]bool, error) {
	pgErr, _ := errors.AsType[*pgconn.PgError](err)
	switch {
	case pgErr != nil && pgErr.Code == codeUndefinedTable:
		return map[int64]bool{}, nil
	case pgErr != nil && pgErr.Code == codeInsufficientPrivilege:
		return nil, fmt.Errorf("check schema %s: the database role may not read %s.%s; run `manushya migrate`, which grants the app role access: %w",
			schema, schema, versionTable, err)
	default:
		return nil, fmt.Errorf("check schema %s: %w", schema, err)
	}
}
