package webhooks

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/services/webhooks/store"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

// outcome is one finished attempt waiting to be recorded.
type outcome struct {
	ep   sqlc.WebhooksEndpoint
	dl   sqlc.WebhooksDelivery
	res  result
	at   time.Time  // when the attempt finished: its last_attempt_time and the base of its backoff
	done chan error // set when the worker waits for the commit (ordered endpoints)
}

// maxOutcomeBatch is how many outcomes of one tenant one transaction records.
const maxOutcomeBatch = 256

// outcomeRecorder records attempts' outcomes by group commit: whatever outcomes
// arrived while the previous transaction was committing go into the next one, a
// transaction per tenant. A lone outcome is recorded at once (nothing waits to
// fill a batch); under load, one commit and a handful of statements serve
// hundreds of deliveries instead of a transaction each.
type outcomeRecorder struct {
	d        *deliverer
	mu       sync.Mutex
	pending  []*outcome
	flushing bool // a flush goroutine is running and will take pending
}

// submit queues o for the next batch. The caller is an endpoint worker, counted
// in d.wg, so the flush goroutine it may start is counted before the
// scheduler's shutdown can finish waiting: queued outcomes are recorded before
// the deliverer stops.
func (r *outcomeRecorder) submit(o *outcome) {
	r.mu.Lock()
	r.pending = append(r.pending, o)
	start := !r.flushing
	r.flushing = true
	r.mu.Unlock()
	if start {
		r.d.wg.Go(r.flushLoop)
	}
}

func (r *outcomeRecorder) flushLoop() {
	for {
		r.mu.Lock()
		batch := r.pending
		r.pending = nil
		if len(batch) == 0 {
			r.flushing = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		r.flush(batch)
	}
}

// flush records batch, one transaction per tenant and per maxOutcomeBatch.
func (r *outcomeRecorder) flush(batch []*outcome) {
	// Recording must finish even while the service stops: the attempts were made.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	groups := map[uuid.UUID][]*outcome{}
	var order []uuid.UUID
	for _, o := range batch {
		t := o.dl.TenantID
		if _, ok := groups[t]; !ok {
			order = append(order, t)
		}
		groups[t] = append(groups[t], o)
	}
	for _, t := range order {
		outs := groups[t]
		for len(outs) > 0 {
			n := min(len(outs), maxOutcomeBatch)
			r.recordTenant(ctx, t, outs[:n])
			outs = outs[n:]
		}
	}
}

// recordTenant records outs of one tenant in one transaction. When that fails,
// each outcome is tried alone, so one bad outcome cannot keep the others from
// being recorded; an outcome that still fails stays leased and its delivery is
// attempted again when the lease expires.
func (r *outcomeRecorder) recordTenant(ctx context.Context, tenant uuid.UUID, outs []*outcome) {
	d := r.d
	finals, wake, err := d.s.recordOutcomes(ctx, tenant, outs)
	if err != nil {
		d.s.forgetPartitions() // in case another replica dropped the day's partition
		if len(outs) > 1 {
			for _, o := range outs {
				r.recordTenant(ctx, tenant, []*outcome{o})
			}
			return
		}
		d.s.logger.Warn("record delivery attempt", "delivery_id", outs[0].dl.ID, "err", err)
		if outs[0].done != nil {
			outs[0].done <- fmt.Errorf("record attempt: %w", err)
		}
		return
	}
	for i, o := range outs {
		d.metrics.observe(o.res, finals[i])
		if o.done != nil {
			o.done <- nil
		}
	}
	if wake {
		d.wake()
	}
}

// recordOutcomes stores outs' attempts and moves their deliveries (and maybe
// their endpoints) on in one transaction. Successes, the common case, take one
// statement for the whole batch; failures go one by one as they may disable
// their endpoint. It returns each outcome's final state for the metrics ("" for
// a retry) and whether a retry is due before the scheduler's next scan.
func (s *Service) recordOutcomes(ctx context.Context, tenant uuid.UUID, outs []*outcome) ([]string, bool, error) {
	finals := make([]string, len(outs))
	wake := false
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		wake = false // a retried transaction starts over
		if err := tx.RelaxCommit(ctx); err != nil {
			return err
		}
		if err := s.insertAttempts(ctx, tx, tenant, outs); err != nil {
			return err
		}
		var ok sqlc.RecordSuccessesParams
		// The endpoints whose latest outcome in the batch is a success: they are
		// healthy again after the failures below are marked.
		healthy := map[uuid.UUID]bool{}
		for i, o := range outs {
			if o.res.success() {
				finals[i] = finalSucceeded
				healthy[o.ep.ID] = true
				ok.Ids = append(ok.Ids, o.dl.ID)
				ok.AttemptCounts = append(ok.AttemptCounts, o.dl.AttemptCount+1)
				ok.StatusCodes = append(ok.StatusCodes, o.res.attempt.GetResponseStatusCode())
				ok.AttemptTimes = append(ok.AttemptTimes, o.at)
				continue
			}
			healthy[o.ep.ID] = false
			final, w, err := s.recordFailure(ctx, tx, o.ep, o.dl, o.res, o.at)
			if err != nil {
				return err
			}
			finals[i], wake = final, wake || w
		}
		// After the failures: a delivery that succeeded stays succeeded even if a
		// 410 in the same batch failed its endpoint's open deliveries.
		if len(ok.Ids) > 0 {
			if err := tx.RecordSuccesses(ctx, ok); err != nil {
				return err
			}
		}
		var ids []uuid.UUID
		for id, h := range healthy {
			if h {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		// In a fixed order, so two replicas' batches cannot deadlock on the rows.
		slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
		// One statement for the batch, which writes only endpoints that were
		// failing, instead of trusting each job's possibly stale endpoint row.
		return tx.MarkEndpointsHealthy(ctx, ids)
	})
	if err != nil {
		return nil, false, err
	}
	return finals, wake, nil
}

// insertAttempts stores outs' attempts in their day partitions, in one statement.
func (s *Service) insertAttempts(ctx context.Context, tx *store.Tx, tenant uuid.UUID, outs []*outcome) error {
	p := sqlc.InsertAttemptsParams{TenantID: tenant}
	for _, o := range outs {
		a := o.res.attempt
		start := a.GetStartTime().AsTime()
		if err := s.ensurePartition(ctx, tx, store.TableAttempts, start); err != nil {
			return err
		}
		reqH, err := jsonMarshal(a.GetRequestHeaders())
		if err != nil {
			return err
		}
		respH, err := jsonMarshal(a.GetResponseHeaders())
		if err != nil {
			return err
		}
		p.DeliveryIds = append(p.DeliveryIds, o.dl.ID)
		p.WebhookIds = append(p.WebhookIds, o.dl.WebhookID)
		p.AttemptNumbers = append(p.AttemptNumbers, o.dl.AttemptCount+1)
		p.RequestHeaders = append(p.RequestHeaders, string(reqH))
		p.RequestBodies = append(p.RequestBodies, a.GetRequestBody())
		p.RequestBodyTruncated = append(p.RequestBodyTruncated, a.GetRequestBodyTruncated())
		p.ResponseStatusCodes = append(p.ResponseStatusCodes, a.GetResponseStatusCode())
		p.ResponseHeaders = append(p.ResponseHeaders, string(respH))
		p.ResponseBodies = append(p.ResponseBodies, a.GetResponseBody())
		p.ResponseBodyTruncated = append(p.ResponseBodyTruncated, a.GetResponseBodyTruncated())
		p.LatenciesUs = append(p.LatenciesUs, a.GetLatency().AsDuration().Microseconds())
		p.Errors = append(p.Errors, a.GetError())
		p.StartTimes = append(p.StartTimes, start)
	}
	return tx.InsertAttempts(ctx, p)
}
