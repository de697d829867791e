package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/manushya-ai/manushya/pkg/bus"
)

// SessionRevokedEvent is the event type the identity service publishes when a
// session ends; its data is the session, with at least "id" and "revoke_time".
const SessionRevokedEvent = "session.revoked"

// Revocations is the set of revoked session ids whose access tokens may still be
// unexpired. Each entry is dropped once no token of the session can be valid.
type Revocations struct {
	mu    sync.RWMutex
	m     map[string]time.Time
	swept time.Time
	now   func() time.Time
}

// NewRevocations returns an empty set.
func NewRevocations() *Revocations {
	return &Revocations{m: map[string]time.Time{}, now: time.Now}
}

// Revoke adds sid until the given time (the last moment one of its tokens could be
// valid).
func (r *Revocations) Revoke(sid string, until time.Time) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.m[sid]; !ok || until.After(prev) {
		r.m[sid] = until
	}
	if now.Sub(r.swept) > time.Minute {
		r.swept = now
		for k, u := range r.m {
			if now.After(u) {
				delete(r.m, k)
			}
		}
	}
}

// IsRevoked reports whether sid is revoked.
func (r *Revocations) IsRevoked(sid string) bool {
	r.mu.RLock()
	_, ok := r.m[sid]
	r.mu.RUnlock()
	return ok
}

// Len is the number of entries, swept or not.
func (r *Revocations) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}

// revokedData is the part of a session.revoked event a verifier needs.
type revokedData struct {
	ID         string    `json:"id"`
	RevokeTime time.Time `json:"revoke_time"`
}

// Apply records the revocation an event describes; other events are ignored.
func (r *Revocations) Apply(ev bus.Event) error {
	if ev.Type != SessionRevokedEvent {
		return nil
	}
	var d revokedData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return fmt.Errorf("decode %s event %s: %w", ev.Type, ev.ID, err)
	}
	if d.ID == "" {
		return fmt.Errorf("%s event %s names no session", ev.Type, ev.ID)
	}
	at := d.RevokeTime
	if at.IsZero() {
		at = ev.Time
	}
	r.Revoke(d.ID, at.Add(MaxAccessTokenTTL+clockLeeway))
	return nil
}

// Follow keeps the set current from the events stream until ctx ends. It replays
// the revocations of the last MaxAccessTokenTTL first (so a process that starts now
// knows every session whose tokens could still be presented), then follows new ones
// as they are published. It uses an ordered ephemeral consumer: nothing durable is
// left behind by processes that come and go.
func (r *Revocations) Follow(ctx context.Context, js jetstream.JetStream, stream string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	start := r.now().Add(-MaxAccessTokenTTL - clockLeeway)
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.TypeFilter(SessionRevokedEvent)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return fmt.Errorf("follow session revocations: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		ev, err := bus.ParseCloudEvent(msg.Data())
		if err == nil {
			err = r.Apply(ev)
		}
		if err != nil {
			logger.Warn("session revocation event ignored", "subject", msg.Subject(), "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("follow session revocations: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}
