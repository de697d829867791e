package config

import (
	"fmt"
	"time"
)

// Config is the whole configuration of one manushya process.
//
// The koanf tags are the setting keys; a redact tag marks values that are masked
// when the configuration is printed ("secret" entirely, "url" only the password).
type Config struct {
	// Target lists the modules to run; "all" runs every one.
	Target      []string          `koanf:"target"`
	Log         LogConfig         `koanf:"log"`
	GRPC        GRPCConfig        `koanf:"grpc"`
	HTTP        HTTPConfig        `koanf:"http"`
	Database    DatabaseConfig    `koanf:"database"`
	NATS        NATSConfig        `koanf:"nats"`
	Redis       RedisConfig       `koanf:"redis"`
	Services    ServicesConfig    `koanf:"services"`
	Auth        AuthConfig        `koanf:"auth"`
	Encryption  EncryptionConfig  `koanf:"encryption"`
	Invitations InvitationsConfig `koanf:"invitations"`
	SSO         SSOConfig         `koanf:"sso"`
	SMTP        SMTPConfig        `koanf:"smtp"`
	Embedding   EmbeddingConfig   `koanf:"embedding"`
	Memory      MemoryConfig      `koanf:"memory"`
	Webhooks    WebhooksConfig    `koanf:"webhooks"`
	RateLimit   RateLimitConfig   `koanf:"ratelimit"`
	Policy      PolicyConfig      `koanf:"policy"`
	Dev         DevConfig         `koanf:"dev"`

	// File is the YAML file the configuration was read from, if any.
	File string `koanf:"-"`
}

// LogConfig configures the process logger.
type LogConfig struct {
	Level  string `koanf:"level"`
	Format string `koanf:"format"`
}

// GRPCConfig configures the gRPC listener every service registers on.
type GRPCConfig struct {
	Addr string `koanf:"addr"`
}

// HTTPConfig configures the HTTP listener: REST gateway, health and metrics.
type HTTPConfig struct {
	Addr            string        `koanf:"addr"`
	MaxBodyBytes    int64         `koanf:"max_body_bytes"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
}

// DatabaseConfig configures PostgreSQL access.
type DatabaseConfig struct {
	// URL connects as the application role, which row-level security applies to.
	URL string `koanf:"url" redact:"url"`
	// MigrateURL connects as the schema owner for migrations; it defaults to URL.
	MigrateURL string `koanf:"migrate_url" redact:"url"`
	// AppRole is the role migrations grant table access to.
	AppRole  string `koanf:"app_role"`
	MaxConns int    `koanf:"max_conns"`
}

// NATSConfig configures the JetStream connection.
type NATSConfig struct {
	// URL is one or more comma-separated server URLs; empty runs an embedded
	// server, which only dev allows.
	URL         string `koanf:"url" redact:"url"`
	EmbeddedDir string `koanf:"embedded_dir"`
}

// RedisConfig configures Redis; an empty URL uses in-process stores instead.
type RedisConfig struct {
	URL string `koanf:"url" redact:"url"`
}

// ServicesConfig holds the gRPC addresses of the services, for the gateway and for
// services calling each other. Empty means the service runs in this process and is
// reached on grpc.addr.
type ServicesConfig struct {
	IdentityAddr  string `koanf:"identity_addr"`
	MemoryAddr    string `koanf:"memory_addr"`
	EmbeddingAddr string `koanf:"embedding_addr"`
	PolicyAddr    string `koanf:"policy_addr"`
	WebhooksAddr  string `koanf:"webhooks_addr"`
	UsageAddr     string `koanf:"usage_addr"`
}

// AuthConfig holds authentication secrets.
type AuthConfig struct {
	// APIKeyPepper keys the hashes API keys are stored as, so a database dump alone
	// cannot be used to check guessed keys.
	APIKeyPepper string `koanf:"api_key_pepper" redact:"secret"`
	// EncryptionKey is the older name of encryption.kek, still accepted (and the key
	// values sealed before the keyring open with).
	EncryptionKey string `koanf:"encryption_key" redact:"secret"`
	// TokenIssuer and TokenAudience are the iss and aud of access tokens.
	TokenIssuer   string `koanf:"token_issuer"`
	TokenAudience string `koanf:"token_audience"`
	// AccessTokenTTL is the access tokens' lifetime (at most 15 minutes).
	AccessTokenTTL time.Duration `koanf:"access_token_ttl"`
	// SessionTTL is how long a session lives however often it is refreshed.
	SessionTTL time.Duration `koanf:"session_ttl"`
	// MFAIssuer is the name authenticator apps show.
	MFAIssuer string `koanf:"mfa_issuer"`
}

// EncryptionConfig configures field-level envelope encryption (pkg/keyring).
type EncryptionConfig struct {
	// KEK is the key-encryption key wrapping the data keys: 32 bytes as 64 hex
	// characters or base64. auth.encryption_key is accepted for it. Empty: dev
	// generates one under dev.data_dir; serve derives one from the pepper.
	KEK string `koanf:"kek" redact:"secret"`
	// PreviousKEKs are older KEKs (comma-separated) that still unwrap data keys
	// until the re-encryption job has re-wrapped them under KEK.
	PreviousKEKs string `koanf:"previous_keks" redact:"secret"`
	// CacheTTL is how long unwrapped data keys stay in process memory.
	CacheTTL time.Duration `koanf:"cache_ttl"`
	// ReencryptInterval is the pause between passes of the re-encryption job.
	ReencryptInterval time.Duration `koanf:"reencrypt_interval"`
	// DEKRotation rotates data keys older than this (0: never on its own).
	DEKRotation time.Duration `koanf:"dek_rotation"`
}

// InvitationsConfig configures invitation emails.
type InvitationsConfig struct {
	// AcceptURL is the link in the email; "{token}" is replaced by the token.
	AcceptURL string        `koanf:"accept_url"`
	TTL       time.Duration `koanf:"ttl"`
}

// SSOConfig configures OpenID Connect single sign-on.
type SSOConfig struct {
	// CallbackBaseURL is the public URL of the REST edge that providers send
	// browsers back to (<base>/v1/sso/callback/{provider}); empty means
	// http://<http.addr>.
	CallbackBaseURL string `koanf:"callback_base_url"`
	// DefaultTenant (slug or id) serves sign-ins that name no tenant.
	DefaultTenant string `koanf:"default_tenant"`
	// AllowedAddresses are private/loopback CIDRs issuer URLs may reach.
	AllowedAddresses []string `koanf:"allowed_addresses"`
}

// SMTPConfig is the mail server invitations go out through; no host means `dev`
// logs the accept link instead and `serve` cannot send invitations by email.
type SMTPConfig struct {
	Host     string `koanf:"host"`
	Port     int    `koanf:"port"`
	Username string `koanf:"username"`
	Password string `koanf:"password" redact:"secret"`
	From     string `koanf:"from"`
	TLSMode  string `koanf:"tls_mode"`
}

// WebhooksConfig configures webhook delivery.
type WebhooksConfig struct {
	// SecretKey (base64 of 32 bytes) opens endpoint secrets and custom headers
	// sealed before the keyring; new ones are sealed by the keyring.
	SecretKey string `koanf:"secret_key" redact:"secret"`
	// AllowedAddresses are CIDRs deliveries may reach although they are private or
	// loopback (dev adds 127.0.0.0/8 and ::1).
	AllowedAddresses []string `koanf:"allowed_addresses"`
}

// RateLimitConfig configures request rate limiting.
type RateLimitConfig struct {
	// Fallback while Redis is down: "local" (in-process limits) or "open".
	Fallback string `koanf:"fallback"`
	// Shadow reports limits without refusing.
	Shadow bool `koanf:"shadow"`
}

// PolicyConfig configures authorization decisions.
type PolicyConfig struct {
	// AuditAllowSample is the fraction (0 to 1) of allowed decisions sent to the
	// audit stream; every denial is sent.
	AuditAllowSample float64 `koanf:"audit_allow_sample"`
}

// EmbeddingConfig configures the embedding service's providers.
type EmbeddingConfig struct {
	// Providers is a JSON list of providers (it may hold API keys); empty means the
	// hashing embedder at 384 dimensions.
	Providers          string        `koanf:"providers" redact:"secret"`
	Fallback           []string      `koanf:"fallback"`
	CacheTTL           time.Duration `koanf:"cache_ttl"`
	MaxTexts           int           `koanf:"max_texts"`
	MaxTextChars       int           `koanf:"max_text_chars"`
	UsageFlushInterval time.Duration `koanf:"usage_flush_interval"`
}

// MemoryConfig tunes the memory service (services/memory Config, whose comments
// carry the measurements behind the defaults). Validate holds each value to what
// the service and its neighbours tolerate.
type MemoryConfig struct {
	// EmbeddingModel is the model asked of the embedding service; empty lets it
	// pick its default. Its vectors must have 384 dimensions.
	EmbeddingModel string `koanf:"embedding_model"`
	// MaxTextBytes bounds a memory's text.
	MaxTextBytes int `koanf:"max_text_bytes"`
	// WaitLimit bounds create/update with wait=true.
	WaitLimit time.Duration `koanf:"wait_limit"`
	// EmbedBatchSize is the most texts per Embed call of the embedder.
	EmbedBatchSize int `koanf:"embed_batch_size"`
	// EmbedConcurrency is how many batches the embedder embeds and stores at once.
	EmbedConcurrency int `koanf:"embed_concurrency"`
	// SweepInterval is how often the embedding, TTL, restore-window and
	// encryption sweepers look for due work.
	SweepInterval time.Duration `koanf:"sweep_interval"`
	// IndexInterval is how often fresh vectors are drained into the HNSW graph.
	IndexInterval time.Duration `koanf:"index_interval"`
	// EfSearch is pgvector's hnsw.ef_search for searches: recall against latency.
	EfSearch int `koanf:"ef_search"`
	// ExactScanRows: a search whose scope holds at most this many embedded rows
	// is ranked by an exact scan instead of the HNSW index.
	ExactScanRows int `koanf:"exact_scan_rows"`
	// ConversionSettle is how long after a change of a tenant's encrypt_text the
	// encryption sweeper keeps looking for rows written in the old form.
	ConversionSettle time.Duration `koanf:"conversion_settle"`
}

// DevConfig configures `manushya dev`.
type DevConfig struct {
	DataDir string `koanf:"data_dir"`
}

// Service names accepted by ServiceAddr.
const (
	ServiceIdentity  = "identity"
	ServiceMemory    = "memory"
	ServiceEmbedding = "embedding"
	ServicePolicy    = "policy"
	ServiceWebhooks  = "webhooks"
	ServiceUsage     = "usage"
)

// ServiceAddr returns the gRPC address to dial for service (one of the Service*
// names): its services.<name>_addr setting, or grpc.addr when that is empty. It
// panics on an unknown name, which is a programming error.
func (c *Config) ServiceAddr(service string) string {
	var addr string
	switch service {
	case ServiceIdentity:
		addr = c.Services.IdentityAddr
	case ServiceMemory:
		addr = c.Services.MemoryAddr
	case ServiceEmbedding:
		addr = c.Services.EmbeddingAddr
	case ServicePolicy:
		addr = c.Services.PolicyAddr
	case ServiceWebhooks:
		addr = c.Services.WebhooksAddr
	case ServiceUsage:
		addr = c.Services.UsageAddr
	default:
		panic(fmt.Sprintf("config: unknown service %q", service))
	}
	if addr == "" {
		return c.GRPC.Addr
	}
	return addr
}

// setting describes one key: its default (whose type decides the flag's type) and
// the help text of its flag.
type setting struct {
	key   string
	def   any
	usage string
}

// settings is the single list of keys: defaults, flags and the unknown-key check
// all come from it, and a test keeps it in step with Config's tags.
var settings = []setting{
	{"target", []string{"all"}, "modules to run, comma-separated (all, or a list of targets)"},
	{"log.level", "info", "log level: debug, info, warn or error"},
	{"log.format", "json", "log format: json or text"},
	{"grpc.addr", "127.0.0.1:9090", "gRPC listen address"},
	{"http.addr", "127.0.0.1:8080", "HTTP listen address (REST gateway, health, metrics)"},
	{"http.max_body_bytes", int64(1 << 20), "largest accepted HTTP request body, in bytes"},
	{"http.shutdown_timeout", 15 * time.Second, "how long servers may drain on shutdown"},
	{"database.url", "", "PostgreSQL URL of the application role"},
	{"database.migrate_url", "", "PostgreSQL URL of the schema owner, for migrations (default: database.url)"},
	{"database.app_role", "manushya_app", "role that migrations grant table access to"},
	{"database.max_conns", 20, "maximum connections in the database pool"},
	{"nats.url", "", "NATS server URL(s), comma-separated; empty runs an embedded server (dev only)"},
	{"nats.embedded_dir", ".manushya/nats", "data directory of the embedded NATS server"},
	{"redis.url", "", "Redis URL (redis:// or rediss://); empty uses in-process stores"},
	{"services.identity_addr", "", "gRPC address of the identity service (default: grpc.addr)"},
	{"services.memory_addr", "", "gRPC address of the memory service (default: grpc.addr)"},
	{"services.embedding_addr", "", "gRPC address of the embedding service (default: grpc.addr)"},
	{"services.policy_addr", "", "gRPC address of the policy service (default: grpc.addr)"},
	{"services.webhooks_addr", "", "gRPC address of the webhooks service (default: grpc.addr)"},
	{"services.usage_addr", "", "gRPC address of the usage service (default: grpc.addr)"},
	{"auth.api_key_pepper", "", "secret keying API key hashes, at least 32 bytes (prefer the environment)"},
	{"auth.encryption_key", "", "older name of encryption.kek (still accepted)"},
	{"auth.token_issuer", "manushya", "iss claim of access tokens"},
	{"auth.token_audience", "manushya", "aud claim of access tokens"},
	{"auth.access_token_ttl", 15 * time.Minute, "lifetime of access tokens (at most 15m)"},
	{"auth.session_ttl", 30 * 24 * time.Hour, "lifetime of a session however often it is refreshed"},
	{"auth.mfa_issuer", "Manushya", "issuer name shown by authenticator apps"},
	{"encryption.kek", "", "key-encryption key wrapping the data keys, 32 bytes hex or base64 (prefer the environment; dev generates one)"},
	{"encryption.previous_keks", "", "older key-encryption keys, comma-separated, kept until their data keys are re-wrapped"},
	{"encryption.cache_ttl", 30 * time.Second, "how long unwrapped data keys stay in process memory"},
	{"encryption.reencrypt_interval", 10 * time.Minute, "pause between passes of the re-encryption job"},
	{"encryption.dek_rotation", 90 * 24 * time.Hour, "rotate data keys older than this (0: never on its own)"},
	{"invitations.accept_url", "http://127.0.0.1:8080/accept-invitation?token={token}", "link put in invitation emails; {token} is replaced"},
	{"invitations.ttl", 7 * 24 * time.Hour, "default lifetime of an invitation"},
	{"sso.callback_base_url", "", "public base URL of the REST edge that SSO providers redirect to (default: http://<http.addr>)"},
	{"sso.default_tenant", "", "tenant (slug or id) of SSO sign-ins that name none"},
	{"sso.allowed_addresses", []string{}, "private/loopback CIDRs SSO issuer URLs may reach (dev adds loopback)"},
	{"smtp.host", "", "SMTP server for invitation emails (empty: dev logs the link)"},
	{"smtp.port", 587, "SMTP port"},
	{"smtp.username", "", "SMTP user (empty: no authentication)"},
	{"smtp.password", "", "SMTP password (prefer the environment)"},
	{"smtp.from", "Manushya <no-reply@localhost>", "sender of invitation emails"},
	{"smtp.tls_mode", "starttls", "starttls, tls or none"},
	{"embedding.providers", "", "embedding providers as a JSON list (empty: hashing at 384 dimensions)"},
	{"embedding.fallback", []string{}, "provider names in fallback order; the first serves the default model"},
	{"embedding.cache_ttl", 24 * time.Hour, "lifetime of cached vectors (negative: no cache)"},
	{"embedding.max_texts", 2048, "most texts per Embed request"},
	{"embedding.max_text_chars", 100000, "longest text accepted, in characters"},
	{"embedding.usage_flush_interval", 5 * time.Second, "how often embedding token usage is written as events"},
	{"memory.embedding_model", "", "embedding model the memory service asks for, 384 dimensions (empty: the embedding service's default)"},
	{"memory.max_text_bytes", 100000, "longest memory text, in bytes (1 to 400000; the API also caps it at 100000 characters)"},
	{"memory.wait_limit", 5 * time.Second, "how long create/update with wait=true waits for the embedding (at most 1m)"},
	{"memory.embed_batch_size", 64, "most texts per Embed call of the memory embedder (1 to 2048)"},
	{"memory.embed_concurrency", 4, "batches the memory embedder embeds and stores at once (1 to 64)"},
	{"memory.sweep_interval", 5 * time.Second, "how often the memory sweepers (embedding retries, TTL, restore window, encryption) look for due work (at least 100ms)"},
	{"memory.index_interval", time.Second, "how often fresh vectors are drained into the HNSW graph (at least 100ms)"},
	{"memory.ef_search", 250, "hnsw.ef_search of memory searches, 1 to 1000: higher finds more of the true neighbours, more slowly"},
	{"memory.exact_scan_rows", 10000, "searches over at most this many embedded rows scan exactly instead of using the index (1 to 1000000)"},
	{"memory.conversion_settle", time.Minute, "how long after an encrypt_text change the sweeper still looks for rows in the old form (at least 10s)"},
	{"webhooks.secret_key", "", "key webhook secrets were sealed under before the keyring, base64 of 32 bytes (read only)"},
	{"webhooks.allowed_addresses", []string{}, "private/loopback CIDRs webhook deliveries may reach (dev adds loopback)"},
	{"ratelimit.fallback", "local", "while Redis is down: local (in-process limits) or open"},
	{"ratelimit.shadow", false, "report rate limits without refusing"},
	{"policy.audit_allow_sample", 0.0, "fraction of allowed authorization decisions sent to the audit stream, 0 to 1 (denials always are)"},
	{"dev.data_dir", ".manushya", "where the dev command keeps its state"},
}

var knownKeys = func() map[string]bool {
	m := make(map[string]bool, len(settings))
	for _, s := range settings {
		m[s.key] = true
	}
	return m
}()
