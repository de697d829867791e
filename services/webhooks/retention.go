package webhooks

import (
	"context"
	"time"

	"github.com/manushya-ai/manushya/services/webhooks/store"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

const retentionEvery = time.Hour

// retentionLoop drops whole day partitions of events and attempts once they are
// past retention, so old logs leave without row-by-row deletes.
func (s *Service) retentionLoop(ctx context.Context) error {
	for {
		if _, err := s.DropExpiredPartitions(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "retention", "err", err)
		}
		if err := s.auditRetention(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "audit retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retentionEvery):
		}
	}
}

// DropExpiredPartitions drops the event and attempt partitions past retention and
// returns how many it dropped.
func (s *Service) DropExpiredPartitions(ctx context.Context) (int, error) {
	now := s.now()
	q := s.store.Global()
	n1, err := q.DropDayPartitionsBefore(ctx, sqlc.DropDayPartitionsBeforeParams{
		Parent: store.TableEvents, Cutoff: store.Day(now.Add(-s.cfg.EventRetention)),
	})
	if err != nil {
		return 0, err
	}
	n2, err := q.DropDayPartitionsBefore(ctx, sqlc.DropDayPartitionsBeforeParams{
		Parent: store.TableAttempts, Cutoff: store.Day(now.Add(-s.cfg.AttemptRetention)),
	})
	if err != nil {
		return int(n1), err
	}
	if n1+n2 > 0 {
		s.forgetPartitions()
		s.logger.InfoContext(ctx, "dropped expired partitions", "events", n1, "attempts", n2)
	}
	return int(n1 + n2), nil
}
