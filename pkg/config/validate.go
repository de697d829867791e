package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/manushya-ai/manushya/pkg/secretbox"
)

// Modes are the commands whose needs Validate checks.
const (
	// ModeServe runs targets in production: external NATS, a real pepper.
	ModeServe = "serve"
	// ModeDev runs everything in one process with an embedded NATS server and a
	// generated pepper (see PrepareDev).
	ModeDev = "dev"
	// ModeMigrate applies database migrations and needs only the database.
	ModeMigrate = "migrate"
)

// MinSecretBytes is the shortest accepted auth secret: 256 bits.
const MinSecretBytes = 32

// FieldError is one invalid setting.
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

// ValidationError lists every invalid setting, so an operator fixes them in one go.
type ValidationError struct {
	Problems []*FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return "invalid configuration: " + strings.Join(msgs, "; ")
}

// Unwrap exposes each problem to errors.As.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

type checker struct {
	problems []*FieldError
}

func (c *checker) add(key, format string, args ...any) {
	c.problems = append(c.problems, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Validate checks what mode needs and returns a *ValidationError naming every
// problem, or nil. Messages never repeat secret values.
func (c *Config) Validate(mode string) error {
	if !slices.Contains([]string{ModeServe, ModeDev, ModeMigrate}, mode) {
		return fmt.Errorf("config: unknown mode %q", mode)
	}
	ck := &checker{}

	oneOf(ck, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(ck, "log.format", c.Log.Format, "json", "text")

	if mode == ModeMigrate {
		if c.Database.MigrateURL == "" {
			ck.add("database.migrate_url", "required (or set database.url)")
		} else {
			postgresURL(ck, "database.migrate_url", c.Database.MigrateURL)
		}
		appRole(ck, c.Database.AppRole)
		return ck.result()
	}

	if len(c.Target) == 0 {
		ck.add("target", "required")
	}
	listenAddr(ck, "grpc.addr", c.GRPC.Addr)
	listenAddr(ck, "http.addr", c.HTTP.Addr)
	if c.HTTP.MaxBodyBytes <= 0 {
		ck.add("http.max_body_bytes", "must be positive")
	}
	if c.HTTP.ShutdownTimeout <= 0 {
		ck.add("http.shutdown_timeout", "must be positive")
	}

	if c.Database.URL == "" {
		ck.add("database.url", "required")
	} else {
		postgresURL(ck, "database.url", c.Database.URL)
	}
	if c.Database.MigrateURL != "" && c.Database.MigrateURL != c.Database.URL {
		postgresURL(ck, "database.migrate_url", c.Database.MigrateURL)
	}
	appRole(ck, c.Database.AppRole)
	if c.Database.MaxConns < 1 {
		ck.add("database.max_conns", "must be at least 1")
	}

	switch {
	case c.NATS.URL != "":
		natsURLs(ck, c.NATS.URL)
	case mode == ModeServe:
		ck.add("nats.url", "required (the embedded server runs only in dev)")
	case c.NATS.EmbeddedDir == "":
		ck.add("nats.embedded_dir", "required when nats.url is empty")
	}

	if c.Redis.URL != "" {
		urlWithScheme(ck, "redis.url", c.Redis.URL, "redis", "rediss", "unix")
	}

	for _, s := range []struct{ key, addr string }{
		{"services.identity_addr", c.Services.IdentityAddr},
		{"services.memory_addr", c.Services.MemoryAddr},
		{"services.embedding_addr", c.Services.EmbeddingAddr},
		{"services.policy_addr", c.Services.PolicyAddr},
		{"services.webhooks_addr", c.Services.WebhooksAddr},
		{"services.usage_addr", c.Services.UsageAddr},
	} {
		if s.addr != "" {
			dialTarget(ck, s.key, s.addr)
		}
	}

	switch {
	case c.Auth.APIKeyPepper == "" && mode == ModeServe:
		ck.add("auth.api_key_pepper", "required")
	case c.Auth.APIKeyPepper != "":
		secret(ck, "auth.api_key_pepper", c.Auth.APIKeyPepper)
	}

	encryption(ck, c)

	if c.Auth.AccessTokenTTL <= 0 || c.Auth.AccessTokenTTL > 15*time.Minute {
		ck.add("auth.access_token_ttl", "must be between 1s and 15m")
	}
	if c.Auth.SessionTTL < c.Auth.AccessTokenTTL {
		ck.add("auth.session_ttl", "must be at least auth.access_token_ttl")
	}
	oneOf(ck, "smtp.tls_mode", c.SMTP.TLSMode, "starttls", "tls", "none")
	if c.SMTP.Port < 0 || c.SMTP.Port > 65535 {
		ck.add("smtp.port", "must be a TCP port")
	}
	if c.Invitations.TTL <= 0 {
		ck.add("invitations.ttl", "must be positive")
	}
	oneOf(ck, "ratelimit.fallback", c.RateLimit.Fallback, "local", "open")
	if a := c.Policy.AuditAllowSample; !(a >= 0 && a <= 1) {
		ck.add("policy.audit_allow_sample", "must be between 0 and 1")
	}
	if c.Embedding.MaxTexts < 1 {
		ck.add("embedding.max_texts", "must be at least 1")
	}
	if c.Embedding.MaxTextChars < 1 {
		ck.add("embedding.max_text_chars", "must be at least 1")
	}
	memory(ck, &c.Memory)

	if mode == ModeDev && c.Dev.DataDir == "" {
		ck.add("dev.data_dir", "required")
	}
	return ck.result()
}

func (c *checker) result() error {
	if len(c.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: c.problems}
}

func oneOf(ck *checker, key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		ck.add(key, "must be one of %s", strings.Join(allowed, ", "))
	}
}

func listenAddr(ck *checker, key, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil || !validPort(port) {
		ck.add(key, "invalid address %q", addr)
	}
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

// dialTarget accepts host:port or a gRPC target with a scheme (dns:///svc:9090,
// unix:///run/x.sock, unix:relative.sock).
func dialTarget(ck *checker, key, addr string) {
	if strings.Contains(addr, "://") || strings.HasPrefix(addr, "unix:") || strings.HasPrefix(addr, "unix-abstract:") {
		u, err := url.Parse(addr)
		if err != nil || u.Scheme == "" || (u.Host == "" && u.Path == "" && u.Opaque == "") {
			ck.add(key, "invalid address %q", addr)
		}
		return
	}
	if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || !validPort(port) {
		ck.add(key, "invalid address %q", addr)
	}
}

// postgresURL accepts a postgres:// URL or a libpq key=value string. Parse errors
// are not echoed: they would repeat the password.
func postgresURL(ck *checker, key, v string) {
	if !strings.Contains(v, "://") {
		if !strings.Contains(v, "=") {
			ck.add(key, "must be a postgres:// URL or a key=value connection string")
		}
		return
	}
	urlWithScheme(ck, key, v, "postgres", "postgresql")
}

func urlWithScheme(ck *checker, key, v string, schemes ...string) {
	u, err := url.Parse(v)
	if err != nil {
		ck.add(key, "invalid URL")
		return
	}
	if !slices.Contains(schemes, u.Scheme) {
		ck.add(key, "URL scheme must be %s", strings.Join(schemes, " or "))
		return
	}
	if u.Host == "" && u.Scheme != "unix" {
		ck.add(key, "URL has no host")
	}
}

func natsURLs(ck *checker, v string) {
	for _, one := range strings.Split(v, ",") {
		one = strings.TrimSpace(one)
		if !strings.Contains(one, "://") {
			dialTarget(ck, "nats.url", one)
			continue
		}
		urlWithScheme(ck, "nats.url", one, "nats", "tls", "ws", "wss")
	}
}

var sqlIdentifier = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func appRole(ck *checker, role string) {
	if !sqlIdentifier.MatchString(role) {
		ck.add("database.app_role", "must be a lower-case SQL identifier")
	}
}

func secret(ck *checker, key, v string) {
	if len(v) < MinSecretBytes {
		ck.add(key, "must be at least %d bytes", MinSecretBytes)
	}
}

// encryption checks the keyring keys: each a 32-byte key, and the older name
// auth.encryption_key not saying something else than encryption.kek.
func encryption(ck *checker, c *Config) {
	if c.Encryption.KEK != "" {
		if _, err := secretbox.ParseKey(c.Encryption.KEK); err != nil {
			ck.add("encryption.kek", "must be 32 bytes as 64 hex characters or base64")
		}
	}
	if c.Auth.EncryptionKey != "" && c.Auth.EncryptionKey != c.Encryption.KEK {
		ck.add("auth.encryption_key", "differs from encryption.kek (its newer name); set only encryption.kek")
	}
	for i, k := range strings.Split(c.Encryption.PreviousKEKs, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if _, err := secretbox.ParseKey(k); err != nil {
			ck.add("encryption.previous_keks", "entry %d must be 32 bytes as 64 hex characters or base64", i+1)
		}
	}
	if c.Encryption.CacheTTL <= 0 {
		ck.add("encryption.cache_ttl", "must be positive")
	}
	if c.Encryption.ReencryptInterval <= 0 {
		ck.add("encryption.reencrypt_interval", "must be positive")
	}
	if c.Encryption.DEKRotation < 0 {
		ck.add("encryption.dek_rotation", "must not be negative")
	}
}

// Bounds of the memory settings. services/memory reads a zero or negative value
// as "use the default", so every lower bound is at least 1: a 0 here would not
// mean "none" but silently the default.
const (
	// maxMemoryTextBytes: the API already holds a memory's text to 100000
	// characters (memory.proto), at most 400000 bytes of UTF-8, so a larger limit
	// could never be reached. Up to it, a limit above the 100000 default admits
	// texts of many-byte characters (CJK, emoji) up to what the API allows; they
	// stay within the embedding service's ceiling of 100000 characters, so every
	// accepted text can still be embedded (a text the embedding service refuses
	// would fail the embedding of its whole batch).
	maxMemoryTextBytes = 400000
	// maxMemoryWait bounds wait=true: a waiting request holds its connection and
	// reads the memory every 100 ms, and one Embed call is given 30s.
	maxMemoryWait = time.Minute
	// maxEmbedBatch is the embedding API's limit of texts per request (and the
	// ceiling of embedding.max_texts): a larger batch fails every Embed call.
	maxEmbedBatch = 2048
	// maxEmbedConcurrency: each batch in flight holds a database connection
	// while it stores its vectors, so the concurrency should stay well below
	// database.max_conns (20 by default) or the API waits for connections; 64 is
	// already more than one process's pool should give the embedder.
	maxEmbedConcurrency = 64
	// minMemoryInterval: the sweepers and the indexer run back to back when
	// their interval is shorter than a pass, each pass a query per table.
	minMemoryInterval = 100 * time.Millisecond
	// maxEfSearch is pgvector's upper limit of hnsw.ef_search; a larger value
	// makes every vector search fail when it sets it.
	maxEfSearch = 1000
	// maxExactScanRows: an exact scan costs about 2 µs a row, so a scope of a
	// million rows takes some 2 s per search; beyond that the HNSW index must
	// answer.
	maxExactScanRows = 1000000
	// minConversionSettle: the encryption sweeper finishes a tenant only with a
	// pass that began this long after encrypt_text changed, so that writes in
	// flight with the old setting are done. It must outlast the longest write
	// transaction plus the clock skew between replicas (the change is stamped by
	// one process, the pass by another): a shorter wait could leave a plain text
	// behind once encryption is on.
	minConversionSettle = 10 * time.Second
)

// memory checks the memory service's settings against the bounds above.
func memory(ck *checker, m *MemoryConfig) {
	intBetween(ck, "memory.max_text_bytes", m.MaxTextBytes, 1, maxMemoryTextBytes)
	if m.WaitLimit <= 0 || m.WaitLimit > maxMemoryWait {
		ck.add("memory.wait_limit", "must be positive and at most %s", maxMemoryWait)
	}
	intBetween(ck, "memory.embed_batch_size", m.EmbedBatchSize, 1, maxEmbedBatch)
	intBetween(ck, "memory.embed_concurrency", m.EmbedConcurrency, 1, maxEmbedConcurrency)
	if m.SweepInterval < minMemoryInterval {
		ck.add("memory.sweep_interval", "must be at least %s", minMemoryInterval)
	}
	if m.IndexInterval < minMemoryInterval {
		ck.add("memory.index_interval", "must be at least %s", minMemoryInterval)
	}
	intBetween(ck, "memory.ef_search", m.EfSearch, 1, maxEfSearch)
	intBetween(ck, "memory.exact_scan_rows", m.ExactScanRows, 1, maxExactScanRows)
	if m.ConversionSettle < minConversionSettle {
		ck.add("memory.conversion_settle", "must be at least %s", minConversionSettle)
	}
}

func intBetween(ck *checker, key string, v, lo, hi int) {
	if v < lo || v > hi {
		ck.add(key, "must be between %d and %d", lo, hi)
	}
}
