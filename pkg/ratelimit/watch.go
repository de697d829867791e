package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/manushya-ai/manushya/pkg/bus"
)

// EventUpdated is the event type the usage service emits when a limit is created,
// changed or deleted. Its data carries the limit's tenant_id, empty for a global
// default.
const EventUpdated = "ratelimit.updated"

// Watch drops cached limits whenever an EventUpdated arrives on nc, until ctx ends.
// It is a plain NATS subscription, not a durable consumer: every process needs
// every change, and one missed while disconnected is caught by the periodic
// refresh.
func (l *Limiter) Watch(ctx context.Context, nc *nats.Conn) error {
	sub, err := nc.Subscribe(bus.TypeFilter(EventUpdated), func(msg *nats.Msg) {
		ev, err := bus.ParseCloudEvent(msg.Data)
		if err != nil {
			l.logger.Warn("malformed rate limit event; reloading every tenant", "err", err)
			l.Invalidate("")
			return
		}
		var data struct {
			TenantID string `json:"tenant_id"`
		}
		if len(ev.Data) > 0 {
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				l.Invalidate("")
				return
			}
		}
		l.Invalidate(data.TenantID)
		l.logger.Debug("rate limits changed", "tenant", data.TenantID)
	})
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", EventUpdated, err)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return ctx.Err()
}
