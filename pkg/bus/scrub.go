package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// scrubBatch is how many messages one fetch of a scrub reads.
const scrubBatch = 500

// Scrub removes from the events stream the messages of tenant that match: it reads
// the tenant's messages stored so far with an ordered consumer and deletes each
// match with a secure delete, which overwrites the message's bytes in the stream's
// store rather than only marking it deleted. Messages published after the scrub
// began are not read. Consumers that had not yet received a removed message never
// will. A message that is not a valid event is kept. afterBatch, when not nil, is
// called after every batch read (a consumer handler keeps its message alive with
// it). It returns how many it removed; running it again removes what is left
// (nothing, when it completed).
//
// Erasure uses it so that an erased identity's earlier events (an external id in
// identity.created, claims in identity.updated) do not outlive the erasure in the
// stream for its retention period.
func (b *Bus) Scrub(ctx context.Context, tenant string, match func(Event) bool, afterBatch func()) (int, error) {
	stream, err := b.JS.Stream(ctx, b.stream.Name)
	if err != nil {
		return 0, fmt.Errorf("scrub: stream %s: %w", b.stream.Name, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("scrub: stream %s info: %w", b.stream.Name, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return 0, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{TenantFilter(tenant)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return 0, fmt.Errorf("scrub: consumer: %w", err)
	}
	removed := 0
	for {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		batch, err := cons.Fetch(scrubBatch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return removed, fmt.Errorf("scrub: fetch: %w", err)
		}
		n, done := 0, false
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				return removed, fmt.Errorf("scrub: message metadata: %w", err)
			}
			seq := meta.Sequence.Stream
			if seq > last {
				done = true
				continue
			}
			ev, err := ParseCloudEvent(msg.Data())
			if err == nil && match(ev) {
				err := stream.SecureDeleteMsg(ctx, seq)
				if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
					return removed, fmt.Errorf("scrub: delete message %d: %w", seq, err)
				}
				if err == nil {
					removed++
				}
			}
			if seq == last {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return removed, fmt.Errorf("scrub: fetch: %w", err)
		}
		if afterBatch != nil {
			afterBatch()
		}
		// Nothing more within the wait: every message of the tenant up to last
		// has been read (the filter skips other tenants' sequences).
		if done || n == 0 {
			return removed, nil
		}
	}
}
