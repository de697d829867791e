package webhooks

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/manushya-ai/manushya/pkg/bus"
)

// Durable consumer names on the bus.
const (
	ConsumerEventStore = "event-store"
	ConsumerDispatcher = "webhook-dispatcher"
)

// errPermanent marks a message that can never be handled; it is terminated rather
// than redelivered.
var errPermanent = errors.New("permanent")

// nakDelay is how long a failed message waits before the bus redelivers it.
const nakDelay = 2 * time.Second

// consume runs handle on every message of the durable consumer with up to workers
// messages in flight, acking after handle succeeds, until ctx ends.
func consume(ctx context.Context, b *bus.Bus, durable string, workers int, logger *slog.Logger,
	handle func(context.Context, []bus.Event) error,
) error {
	for {
		err := consumeOnce(ctx, b, durable, workers, logger, handle)
		if ctx.Err() != nil {
			return nil
		}
		logger.WarnContext(ctx, "consumer stopped, restarting", "consumer", durable, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(nakDelay):
		}
	}
}

func consumeOnce(ctx context.Context, b *bus.Bus, durable string, workers int, logger *slog.Logger,
	handle func(context.Context, []bus.Event) error,
) error {
	if _, err := b.EnsureStream(ctx); err != nil {
		return err
	}
	cons, err := b.Consumer(ctx, durable, []string{bus.SubjectPrefix + ".>"}, func(c *jetstream.ConsumerConfig) {
		c.MaxAckPending = max(c.MaxAckPending, 16*maxBatch)
	})
	if err != nil {
		return err
	}
	return runLanes(ctx, cons, durable, workers, func(ctx context.Context, batch []jetstream.Msg) {
		handleBatch(ctx, batch, durable, logger, handle)
	})
}

// runLanes feeds the consumer's messages to one lane per worker, chosen by
// tenant, so a tenant's messages are handled in stream order (strict
// per-endpoint ordering and the audit chain depend on it) and different tenants
// in parallel. Each lane hands handle whatever is waiting, so one transaction
// covers many messages when the stream is busy. It returns when ctx ends.
func runLanes(ctx context.Context, cons jetstream.Consumer, durable string, workers int,
	handle func(context.Context, []jetstream.Msg),
) error {
	lanes := make([]chan jetstream.Msg, workers)
	for i := range lanes {
		lanes[i] = make(chan jetstream.Msg, maxBatch)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case lanes[laneOf(m.Subject(), workers)] <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(8*maxBatch))
	if err != nil {
		return fmt.Errorf("consume %s: %w", durable, err)
	}
	var wg sync.WaitGroup
	for _, msgs := range lanes {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-msgs:
					batch := []jetstream.Msg{m}
				fill:
					for len(batch) < maxBatch {
						select {
						case m := <-msgs:
							batch = append(batch, m)
						default:
							break fill
						}
					}
					handle(ctx, batch)
				}
			}
		})
	}
	<-ctx.Done()
	cc.Stop()
	wg.Wait()
	return nil
}

// laneOf picks the worker of a subject's tenant (manushya.<tenant>.<type>, or
// audit.<tenant>).
func laneOf(subject string, n int) int {
	tenant := subject
	if parts := strings.SplitN(subject, ".", 3); len(parts) >= 2 {
		tenant = parts[1]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(tenant))
	return int(h.Sum32() % uint32(n))
}

// maxBatch is the most messages one consumer worker handles in one call.
const maxBatch = 64

func handleBatch(ctx context.Context, msgs []jetstream.Msg, durable string, logger *slog.Logger,
	handle func(context.Context, []bus.Event) error,
) {
	evs := make([]bus.Event, 0, len(msgs))
	good := make([]jetstream.Msg, 0, len(msgs))
	for _, m := range msgs {
		ev, err := bus.ParseCloudEvent(m.Data())
		if err != nil {
			logger.ErrorContext(ctx, "dropping message", "consumer", durable, "subject", m.Subject(), "err", err)
			_ = m.Term()
			continue
		}
		evs = append(evs, ev)
		good = append(good, m)
	}
	if len(evs) == 0 {
		return
	}
	err := handle(ctx, evs)
	if err == nil {
		for _, m := range good {
			if err := m.Ack(); err != nil {
				logger.WarnContext(ctx, "ack failed", "consumer", durable, "err", err)
			}
		}
		return
	}
	if len(evs) == 1 || ctx.Err() != nil {
		settle(ctx, good[0], evs[0], err, durable, logger)
		return
	}
	// One bad event must not hold back the others: handle them one by one.
	for i, m := range good {
		settle(ctx, m, evs[i], handle(ctx, evs[i:i+1]), durable, logger)
	}
}

func settle(ctx context.Context, m jetstream.Msg, ev bus.Event, err error, durable string, logger *slog.Logger) {
	switch {
	case err == nil:
		if err := m.Ack(); err != nil {
			logger.WarnContext(ctx, "ack failed", "consumer", durable, "err", err)
		}
	case errors.Is(err, bus.ErrInvalidEvent), errors.Is(err, errPermanent):
		logger.ErrorContext(ctx, "dropping message", "consumer", durable, "subject", m.Subject(), "err", err)
		_ = m.Term()
	default:
		if ctx.Err() != nil {
			return
		}
		logger.WarnContext(ctx, "message failed, redelivering", "consumer", durable, "event_id", ev.ID, "err", err)
		_ = m.NakWithDelay(nakDelay)
	}
}
