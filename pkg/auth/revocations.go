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

// TokensRevokedEvent is the event type the identity service publishes when it
// raises an identity's token generation (a role was taken away): every access
// token of the identity from an older generation stops working. Its data has
// "identity_id", "min_generation" and "revoke_time".
const TokensRevokedEvent = "identity.tokens_revoked"

// Revocations is the set of revoked session ids whose access tokens may still be
// unexpired, and of identities whose older token generations are refused. Each
// entry is dropped once no token it refuses can be valid.
type Revocations struct {
	mu    sync.RWMutex
	m     map[string]time.Time
	gens  map[string]generationFloor
	swept time.Time
	now   func() time.Time
}

// generationFloor is the lowest token generation accepted for an identity, until
// the last token of an older generation has expired.
type generationFloor struct {
	min   int64
	until time.Time
}

// NewRevocations returns an empty set.
func NewRevocations() *Revocations {
	return &Revocations{m: map[string]time.Time{}, gens: map[string]generationFloor{}, now: time.Now}
}

// RaiseGeneration refuses the identity's access tokens of a generation below min
// until the given time (the last moment one of them could be valid).
func (r *Revocations) RaiseGeneration(identity string, minGen int64, until time.Time) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, ok := r.gens[identity]
	if !ok || minGen > prev.min {
		prev.min = minGen
	}
	if until.After(prev.until) {
		prev.until = until
	}
	r.gens[identity] = prev
	r.sweepLocked(now)
}

// IsStale reports whether a token of the given generation of identity is refused.
func (r *Revocations) IsStale(identity string, gen int64) bool {
	r.mu.RLock()
	f, ok := r.gens[identity]
	r.mu.RUnlock()
	return ok && gen < f.min
}

// sweepLocked drops expired entries, at most once a minute.
func (r *Revocations) sweepLocked(now time.Time) {
	if now.Sub(r.swept) <= time.Minute {
		return
	}
	r.swept = now
	for k, u := range r.m {
		if now.After(u) {
			delete(r.m, k)
		}
	}
	for k, f := range r.gens {
		if now.After(f.until) {
			delete(r.gens, k)
		}
	}
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
	r.sweepLocked(now)
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
	return len(r.m) + len(r.gens)
}

// revokedData is the part of a session.revoked event a verifier needs.
type revokedData struct {
	ID         string    `json:"id"`
	RevokeTime time.Time `json:"revoke_time"`
}

// tokensRevokedData is the data of an identity.tokens_revoked event.
type tokensRevokedData struct {
	IdentityID    string    `json:"identity_id"`
	MinGeneration int64     `json:"min_generation"`
	RevokeTime    time.Time `json:"revoke_time"`
}

// TokensRevoked is the data of an identity.tokens_revoked event for the identity
// service to publish.
func TokensRevoked(identity string, minGen int64, at time.Time) any {
	return tokensRevokedData{IdentityID: identity, MinGeneration: minGen, RevokeTime: at}
}

// Apply records the revocation an event describes; other events are ignored.
func (r *Revocations) Apply(ev bus.Event) error {
	if ev.Type == TokensRevokedEvent {
		var d tokensRevokedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return fmt.Errorf("decode %s event %s: %w", ev.Type, ev.ID, err)
		}
		if d.IdentityID == "" || d.MinGeneration <= 0 {
			return fmt.Errorf("%s event %s names no identity or generation", ev.Type, ev.ID)
		}
		at := d.RevokeTime
		if at.IsZero() {
			at = ev.Time
		}
		r.RaiseGeneration(d.IdentityID, d.MinGeneration, at.Add(MaxAccessTokenTTL+clockLeeway))
		return nil
	}
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

// Follow keeps the set current from the events stream (session.revoked and
// identity.tokens_revoked) until ctx ends. It replays the revocations of the last MaxAccessTokenTTL first (so a process that starts now
// knows every session whose tokens could still be presented), then follows new ones
// as they are published. It uses an ordered ephemeral consumer: nothing durable is
// left behind by processes that come and go.
func (r *Revocations) Follow(ctx context.Context, js jetstream.JetStream, stream string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	start := r.now().Add(-MaxAccessTokenTTL - clockLeeway)
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.TypeFilter(SessionRevokedEvent), bus.TypeFilter(TokensRevokedEvent)},
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
