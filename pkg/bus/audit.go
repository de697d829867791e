package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The audit stream carries audit records (pkg/audit), apart from domain events:
// every process that serves requests publishes to it, only the webhooks service's
// audit writer reads it, and its records are not events (webhook subscribers and
// the event store never see them).
const (
	// AuditStreamName is the default name of the audit stream.
	AuditStreamName = "AUDIT"
	// AuditSubjectPrefix is the first token of every audit subject:
	// audit.<tenant>.
	AuditSubjectPrefix = "audit"
)

// DefaultAuditStreamOptions returns AUDIT on audit.>, file storage (records
// survive a NATS restart), one replica, seven days of history (the writer
// normally drains it within a second; the history only matters while the
// webhooks service is down) and a two minute duplicate window, so a record
// re-sent after a lost ack is stored once.
func DefaultAuditStreamOptions() StreamOptions {
	return StreamOptions{
		Name:       AuditStreamName,
		Subjects:   []string{AuditSubjectPrefix + ".>"},
		Storage:    jetstream.FileStorage,
		Replicas:   1,
		MaxAge:     7 * 24 * time.Hour,
		Duplicates: 2 * time.Minute,
	}
}

// WithAuditStream sets the audit stream EnsureAuditStream creates and
// AuditConsumer attaches to (tests use it to keep streams apart).
func WithAuditStream(s StreamOptions) Option {
	return func(c *config) { c.audit = s }
}

// AuditSubject is the subject of a tenant's audit records. The tenant must be
// valid (ValidateTenant): it becomes a subject token.
func AuditSubject(tenant string) string {
	return AuditSubjectPrefix + "." + tenant
}

// AuditStreamName is the name of the audit stream this bus uses.
func (b *Bus) AuditStreamName() string { return b.audit.Name }

// AuditSubjectOf is the subject of a tenant's audit records on this bus's audit
// stream (its first subject's prefix, so a test's stream keeps its own subjects).
func (b *Bus) AuditSubjectOf(tenant string) string {
	return b.auditPrefix + "." + tenant
}

// EnsureAuditStream creates the audit stream, or updates it to the configured
// shape. Idempotent: every process that publishes audit records calls it.
func (b *Bus) EnsureAuditStream(ctx context.Context) (jetstream.Stream, error) {
	s := b.audit
	st, err := b.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       s.Name,
		Subjects:   s.Subjects,
		Storage:    s.Storage,
		Replicas:   s.Replicas,
		MaxAge:     s.MaxAge,
		Duplicates: s.Duplicates,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", s.Name, err)
	}
	return st, nil
}

// AuditConsumer creates (or updates) a durable pull consumer on the audit stream,
// configured like Consumer.
func (b *Bus) AuditConsumer(ctx context.Context, durable string, opts ...ConsumerOption) (jetstream.Consumer, error) {
	return b.consumerOn(ctx, b.audit.Name, durable, b.audit.Subjects, opts...)
}
