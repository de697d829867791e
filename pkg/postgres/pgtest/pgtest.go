package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

const (
	// EnvDatabaseURL names the superuser URL of the maintenance database.
	EnvDatabaseURL = "MANUSHYA_TEST_DATABASE_URL"
	// EnvKeepDB keeps each test's database instead of dropping it when set.
	EnvKeepDB = "MANUSHYA_TEST_KEEP_DB"

	defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

	// OwnerRole owns the schemas and tables, as in production.
	OwnerRole = "manushya"
	// AppRole is what services (and DB.Pool) connect as.
	AppRole = "manushya_app"

	templatePrefix = "manushya_tpl_"
	buildSuffix    = "_build"
	clonePrefix    = "manushya_test_"

	// templateFormat is part of every template's hash: bump it when the way templates
	// are built changes, so old ones are not reused.
	templateFormat = "pgtest template v1"

	// Databases left behind by killed test runs are dropped after these ages. A template
	// still in use is rebuilt on demand.
	cloneMaxAge    = 24 * time.Hour
	templateMaxAge = 7 * 24 * time.Hour

	commentPrefix = "pgtest created "

	// rolesLockKey serializes role creation across processes ("mroles" in ASCII).
	rolesLockKey int64 = 0x6d726f6c6573

	setupTimeout   = 3 * time.Minute
	cleanupTimeout = 30 * time.Second
)

// DB is one test's database.
type DB struct {
	// AdminURL connects to the database as the superuser.
	AdminURL string
	// OwnerURL connects to the database as the owner role (manushya).
	OwnerURL string
	// AppURL connects to the database as the app role (manushya_app).
	AppURL string
	// Name is the database name.
	Name string
	// Pool is connected as the app role and closed when the test ends.
	Pool *pgxpool.Pool
}

// New returns a fresh database for t with sets applied, cloned from a template built
// once per distinct set of migrations, and dropped when t ends. It fails t, pointing at
// `make setup`, when PostgreSQL cannot be reached.
func New(t testing.TB, sets ...postgres.Migrations) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	base, err := baseURL()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	conn, err := connect(ctx, base.String())
	if err != nil {
		t.Fatalf("pgtest: cannot connect to PostgreSQL at %s: %v\n"+
			"Run `make setup` to install and start PostgreSQL, Redis and NATS (or set %s).",
			base.Redacted(), err, EnvDatabaseURL)
	}
	// Ending the session releases any advisory lock still held on a failure path.
	defer closeConn(conn)

	if err := ensureRoles(ctx, conn); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	hash, err := fingerprint(sets)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	template := templatePrefix + hash
	key := lockKey(hash)

	if err := ensureTemplate(ctx, t, conn, base, template, key, sets); err != nil {
		t.Fatalf("pgtest: template database %s: %v", template, err)
	}
	// ensureTemplate returns holding a shared lock, which keeps the template from being
	// garbage-collected while it is copied.
	name := clonePrefix + randomHex(8)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(template)+" OWNER "+ident(OwnerRole))
	if err != nil {
		t.Fatalf("pgtest: create database %s from %s: %v", name, template, err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock_shared($1)", key); err != nil {
		t.Fatalf("pgtest: release template lock: %v", err)
	}
	t.Cleanup(func() { dropClone(t, base, name) })
	comment := commentPrefix + time.Now().UTC().Format(time.RFC3339) + " for " + t.Name()
	if _, err := conn.Exec(ctx, "COMMENT ON DATABASE "+ident(name)+" IS "+literal(comment)); err != nil {
		t.Fatalf("pgtest: comment on database %s: %v", name, err)
	}

	db := &DB{
		AdminURL: withDatabase(base, name),
		OwnerURL: withUser(base, OwnerRole, name),
		AppURL:   withUser(base, AppRole, name),
		Name:     name,
	}
	db.Pool, err = postgres.Connect(ctx, db.AppURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(db.Pool.Close)
	return db
}

func baseURL() (*url.URL, error) {
	raw := os.Getenv(EnvDatabaseURL)
	if raw == "" {
		raw = defaultURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, fmt.Errorf("%s must be a postgres:// URL with a host, like %s", EnvDatabaseURL, defaultURL)
	}
	return u, nil
}

// withDatabase is base pointed at another database, same user.
func withDatabase(base *url.URL, db string) string {
	u := *base
	u.Path = "/" + db
	u.RawPath = ""
	return u.String()
}

// withUser is base pointed at db as user; test roles use their name as password, which
// trust authentication ignores anyway.
func withUser(base *url.URL, user, db string) string {
	u := *base
	u.User = url.UserPassword(user, user)
	u.Path = "/" + db
	u.RawPath = ""
	return u.String()
}

func connect(ctx context.Context, rawURL string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, errors.New("invalid connection URL")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	cfg.RuntimeParams["application_name"] = "pgtest"
	return pgx.ConnectConfig(ctx, cfg)
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

var (
	rolesMu    sync.Mutex
	rolesReady bool
)

// ensureRoles creates the owner and app roles when missing (once per process) and
// refuses an app role that would not be subject to row-level security.
func ensureRoles(ctx context.Context, conn *pgx.Conn) error {
	rolesMu.Lock()
	defer rolesMu.Unlock()
	if rolesReady {
		return nil
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// CREATE ROLE races between processes end in a unique violation on pg_authid.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", rolesLockKey); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '`+OwnerRole+`') THEN
		CREATE ROLE `+OwnerRole+` LOGIN PASSWORD '`+OwnerRole+`';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '`+AppRole+`') THEN
		CREATE ROLE `+AppRole+` LOGIN PASSWORD '`+AppRole+`' NOSUPERUSER NOBYPASSRLS;
	END IF;
END
$$`)
		return err
	})
	if err != nil {
		return fmt.Errorf("create roles %s and %s: %w", OwnerRole, AppRole, err)
	}
	var superuser, bypassRLS bool
	err = conn.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", AppRole).
		Scan(&superuser, &bypassRLS)
	if err != nil {
		return fmt.Errorf("inspect role %s: %w", AppRole, err)
	}
	if superuser || bypassRLS {
		return fmt.Errorf("role %s is a superuser or has BYPASSRLS, so row-level security tests would pass for the wrong reason; run: ALTER ROLE %s NOSUPERUSER NOBYPASSRLS", AppRole, AppRole)
	}
	rolesReady = true
	return nil
}

// fingerprint hashes everything a template's content depends on.
func fingerprint(sets []postgres.Migrations) (string, error) {
	h := sha256.New()
	field := func(b []byte) {
		_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
		h.Write(b)
	}
	field([]byte(templateFormat))
	field([]byte(postgres.SuperuserSetupSQL))
	for _, set := range sets {
		field([]byte(set.Schema))
		if set.FS == nil {
			return "", fmt.Errorf("schema %s: FS is nil", set.Schema)
		}
		names, err := fs.Glob(set.FS, "*.sql")
		if err != nil {
			return "", fmt.Errorf("schema %s: list migrations: %w", set.Schema, err)
		}
		for _, name := range names {
			body, err := fs.ReadFile(set.FS, name)
			if err != nil {
				return "", fmt.Errorf("schema %s: read %s: %w", set.Schema, name, err)
			}
			field([]byte(name))
			field(body)
		}
		field(nil) // ends the set, so files cannot move between sets unnoticed
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// lockKey derives a template's advisory lock from its hash; 60 bits keep it positive.
func lockKey(hash string) int64 {
	n, _ := strconv.ParseInt(hash[:15], 16, 64)
	return n
}

// ensureTemplate makes sure template exists, building it if needed, and returns
// holding a shared advisory lock on key; the caller releases it after copying.
func ensureTemplate(ctx context.Context, t testing.TB, conn *pgx.Conn, base *url.URL, template string, key int64, sets []postgres.Migrations) error {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	exists, err := databaseExists(ctx, conn, template)
	if err != nil {
		return err
	}
	if !exists {
		if err := buildTemplate(ctx, conn, base, template, sets); err != nil {
			return err
		}
		collectGarbage(ctx, t, conn)
	}
	// Shared before exclusive is released, so no collector can slip in between.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock_shared($1)", key); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	return nil
}

func databaseExists(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var exists bool
	err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("look up database %s: %w", name, err)
	}
	return exists, nil
}

// buildTemplate builds under a temporary name and renames at the end, so a template
// that exists is complete even if an earlier build was killed halfway.
func buildTemplate(ctx context.Context, conn *pgx.Conn, base *url.URL, template string, sets []postgres.Migrations) error {
	build := template + buildSuffix
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(build)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop leftover %s: %w", build, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident(build)+" OWNER "+ident(OwnerRole)); err != nil {
		return fmt.Errorf("create %s: %w", build, err)
	}

	buildConn, err := connect(ctx, withDatabase(base, build))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", build, err)
	}
	_, err = buildConn.Exec(ctx, postgres.SuperuserSetupSQL)
	// Nothing may stay connected to a template, or copying it fails.
	closeConn(buildConn)
	if err != nil {
		return fmt.Errorf("create extension vector (is pgvector installed? `make setup` builds it): %w", err)
	}

	if err := postgres.Migrate(ctx, withUser(base, OwnerRole, build), AppRole, sets...); err != nil {
		return err
	}

	stmts := []string{
		"ALTER DATABASE " + ident(build) + " RENAME TO " + ident(template),
		// No connections: a stray session would make every copy fail.
		"ALTER DATABASE " + ident(template) + " WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
		"COMMENT ON DATABASE " + ident(template) + " IS " + literal(commentPrefix+time.Now().UTC().Format(time.RFC3339)),
	}
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

// collectGarbage drops clones left by killed test runs and templates of migrations
// that have since changed. It runs only after a template build, which is rare, and a
// failure only means some disk stays used a while longer.
func collectGarbage(ctx context.Context, t testing.TB, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '')
FROM pg_database
WHERE datname LIKE $1 OR datname LIKE $2`,
		likePrefix(clonePrefix), likePrefix(templatePrefix))
	if err != nil {
		t.Logf("pgtest: list old databases: %v", err)
		return
	}
	type candidate struct{ name, comment string }
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (candidate, error) {
		var c candidate
		err := row.Scan(&c.name, &c.comment)
		return c, err
	})
	if err != nil {
		t.Logf("pgtest: list old databases: %v", err)
		return
	}
	now := time.Now()
	for _, c := range found {
		created, ok := createdAt(c.comment)
		if !ok {
			continue
		}
		age := now.Sub(created)
		switch {
		case strings.HasPrefix(c.name, clonePrefix) && age > cloneMaxAge:
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(c.name)+" WITH (FORCE)"); err != nil {
				t.Logf("pgtest: drop old database %s: %v", c.name, err)
			}
		case strings.HasPrefix(c.name, templatePrefix) && !strings.HasSuffix(c.name, buildSuffix) && age > templateMaxAge:
			dropTemplate(ctx, t, conn, c.name)
		}
	}
}

// dropTemplate drops an old template unless some process is building or copying it.
func dropTemplate(ctx context.Context, t testing.TB, conn *pgx.Conn, name string) {
	hash := strings.TrimPrefix(name, templatePrefix)
	if len(hash) < 15 {
		return
	}
	key := lockKey(hash)
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&locked); err != nil || !locked {
		return
	}
	defer func() { _, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key) }()
	// A template left invalid by an interrupted drop refuses ALTER but can still be
	// dropped, so the DROP is tried whatever the ALTER said.
	_, alterErr := conn.Exec(ctx, "ALTER DATABASE "+ident(name)+" WITH IS_TEMPLATE false")
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)); err != nil {
		t.Logf("pgtest: drop old template %s: %v (unmarking it as a template: %v)", name, err, alterErr)
	}
}

func createdAt(comment string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(comment, commentPrefix)
	if !ok {
		return time.Time{}, false
	}
	stamp, _, _ := strings.Cut(rest, " ")
	created, err := time.Parse(time.RFC3339, stamp)
	return created, err == nil
}

func dropClone(t testing.TB, base *url.URL, name string) {
	if os.Getenv(EnvKeepDB) != "" {
		t.Logf("pgtest: kept database %s (%s is set)", name, EnvKeepDB)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	conn, err := connect(ctx, base.String())
	if err != nil {
		t.Errorf("pgtest: drop database %s: %v", name, err)
		return
	}
	defer closeConn(conn)
	// FORCE ends sessions a test left open (a leaked pool, a listener).
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
		t.Errorf("pgtest: drop database %s: %v", name, err)
	}
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// literal quotes s as an SQL string literal, for statements that take no parameters.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// likePrefix is a LIKE pattern matching names that start with prefix.
func likePrefix(prefix string) string {
	return strings.NewReplacer(`\`, `\\`, `_`, `\_`, `%`, `\%`).Replace(prefix) + "%"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails; it crashes the program first
	return hex.EncodeToString(b)
}
