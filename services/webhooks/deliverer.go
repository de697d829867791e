package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/bus"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
	"github.com/manushya-ai/manushya/services/webhooks/store"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

// job is one leased delivery on its way to an endpoint's queue.
type job struct {
	deliveryID, tenantID, webhookID uuid.UUID
	seq                             int64
	// fresh is set by the dispatcher for a delivery it just created: the row and
	// its endpoint as of that transaction, so the first attempt need not load them.
	fresh *loaded
}

type loaded struct {
	dl sqlc.WebhooksDelivery
	ep sqlc.WebhooksEndpoint
}

// endpointQueue is one endpoint's own queue and workers: a slow or dead endpoint
// fills only its own queue, and the scheduler stops leasing its deliveries until
// there is room, so it never holds back the others.
type endpointQueue struct {
	ch      chan job
	workers int
	orderMu sync.Mutex // held around each attempt when the endpoint is ordered

	rateMu   sync.Mutex
	nextSlot time.Time
}

// deliverer leases due deliveries from the queue table and runs their attempts.
type deliverer struct {
	s      *Service
	client *http.Client
	wakeCh chan struct{}
	global chan struct{} // the cap on attempts in flight across endpoints

	mu      sync.Mutex
	ctx     context.Context // the scheduler's, which the endpoint workers share
	eps     map[uuid.UUID]*endpointQueue
	wg      sync.WaitGroup
	running atomic.Bool
	metrics *deliveryMetrics // nil: not exported

	recorder outcomeRecorder
}

func newDeliverer(s *Service, policy addressPolicy) *deliverer {
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would dial on our behalf, past the address check
		DialContext:           policy.dialContext(s.cfg.Timeout),
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: s.cfg.Timeout,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   s.cfg.EndpointConcurrency * 2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	d := &deliverer{
		s: s,
		client: &http.Client{
			Transport: tr,
			Timeout:   s.cfg.Timeout,
			// Redirects are not followed: the target was never checked, and a
			// receiver that moved should update its URL.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		wakeCh: make(chan struct{}, 1),
		global: make(chan struct{}, s.cfg.GlobalConcurrency),
		eps:    map[uuid.UUID]*endpointQueue{},
	}
	d.recorder.d = d
	return d
}

// wake makes the scheduler look for due deliveries now.
func (d *deliverer) wake() {
	select {
	case d.wakeCh <- struct{}{}:
	default:
	}
}

func (d *deliverer) runCtx() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ctx
}

// run is the scheduler loop.
func (d *deliverer) run(ctx context.Context) error {
	d.mu.Lock()
	d.ctx = ctx
	d.mu.Unlock()
	d.running.Store(true)
	defer d.releaseQueued()
	defer d.running.Store(false)
	for {
		n, err := d.leaseOnce(ctx)
		if err != nil && ctx.Err() == nil {
			d.s.logger.WarnContext(ctx, "lease deliveries", "err", err)
		}
		if n > 0 && err == nil {
			continue
		}
		// First attempts are handed over by the dispatcher; the scheduler is for
		// retries and overflow, so it need not scan the queue more than this often.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(minLeaseGap):
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.wakeCh:
		case <-time.After(d.s.cfg.PollInterval):
		}
	}
}

const leaseBatch = 256

// minLeaseGap is the shortest pause between two idle scans of the queue.
const minLeaseGap = 20 * time.Millisecond

// orderedStep is how far behind an earlier delivery a held-back one is requeued.
const orderedStep = 10 * time.Millisecond

// queueDepth is how many rounds of attempts an endpoint's queue holds.
const queueDepth = 4

func (d *deliverer) leaseOnce(ctx context.Context) (int, error) {
	d.mu.Lock()
	busy := make([]uuid.UUID, 0)
	for id, q := range d.eps {
		if len(q.ch) == cap(q.ch) {
			busy = append(busy, id)
		}
	}
	d.mu.Unlock()
	now := d.s.now()
	lease := d.leaseFor()
	rows, err := d.s.store.Global().LeaseDue(ctx, sqlc.LeaseDueParams{
		Now: now, Busy: busy, MaxRows: leaseBatch, LeaseUntil: now.Add(lease),
	})
	if err != nil {
		return 0, fmt.Errorf("lease due deliveries: %w", err)
	}
	sent := 0
	for _, r := range rows {
		if d.enqueue(ctx, job{deliveryID: r.DeliveryID, tenantID: r.TenantID, webhookID: r.WebhookID, seq: r.Seq}) {
			sent++
			continue
		}
		if err := d.s.store.Global().ReleaseLease(ctx, r.DeliveryID); err != nil {
			return sent, fmt.Errorf("release lease: %w", err)
		}
	}
	// A full batch means more may be due; a batch of only full queues does not.
	if len(rows) == leaseBatch && sent > 0 {
		return sent, nil
	}
	return 0, nil
}

// leaseFor is how long a leased job stays with this process: it may wait behind
// a full queue of attempts before its own.
func (d *deliverer) leaseFor() time.Duration {
	return time.Duration(queueDepth+2)*d.s.cfg.Timeout + 30*time.Second
}

// handOff gives a job leased at creation to its endpoint's queue; false when the
// queue is full or the scheduler is not running, and the lease must be released.
func (d *deliverer) handOff(j job) bool {
	if !d.running.Load() {
		return false
	}
	ctx := d.runCtx()
	return ctx != nil && ctx.Err() == nil && d.enqueue(ctx, j)
}

// release gives a leased delivery back to the scheduler.
func (d *deliverer) release(id uuid.UUID) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.s.store.Global().ReleaseLease(ctx, id); err != nil {
		d.s.logger.Warn("release lease", "delivery_id", id, "err", err)
	}
}

// releaseQueued waits for the workers, then gives back every job still queued.
func (d *deliverer) releaseQueued() {
	d.wg.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []uuid.UUID
	for _, q := range d.eps {
	drain:
		for {
			select {
			case j := <-q.ch:
				ids = append(ids, j.deliveryID)
			default:
				break drain
			}
		}
	}
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.s.store.Global().ReleaseLeases(ctx, ids); err != nil {
		d.s.logger.Warn("release leases", "count", len(ids), "err", err)
	}
}

// hasRoom reports whether the endpoint's queue can take another job now.
func (d *deliverer) hasRoom(webhookID uuid.UUID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	q, ok := d.eps[webhookID]
	return !ok || len(q.ch) < cap(q.ch)
}

// enqueue hands j to its endpoint's queue without blocking; false when full.
func (d *deliverer) enqueue(ctx context.Context, j job) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	q, ok := d.eps[j.webhookID]
	if !ok {
		q = &endpointQueue{ch: make(chan job, queueDepth*d.s.cfg.EndpointConcurrency)}
		d.eps[j.webhookID] = q
	}
	select {
	case q.ch <- j:
	default:
		return false
	}
	for q.workers < d.s.cfg.EndpointConcurrency {
		q.workers++
		d.wg.Go(func() { d.work(ctx, j.webhookID, q) })
	}
	return true
}

const workerIdle = 30 * time.Second

// work runs one of an endpoint's workers until it has been idle for a while.
func (d *deliverer) work(ctx context.Context, webhookID uuid.UUID, q *endpointQueue) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q.ch:
			d.attempt(ctx, q, j)
			if len(q.ch) == 0 {
				// The queue ran dry: more of this endpoint's deliveries may be due.
				d.wake()
			}
			idle.Reset(workerIdle)
		case <-idle.C:
			d.mu.Lock()
			if len(q.ch) > 0 {
				d.mu.Unlock()
				idle.Reset(workerIdle)
				continue
			}
			q.workers--
			if q.workers == 0 && d.eps[webhookID] == q {
				delete(d.eps, webhookID)
			}
			d.mu.Unlock()
			return
		}
	}
}

// waitRate spaces the endpoint's attempts to at most perSecond.
func (q *endpointQueue) waitRate(ctx context.Context, perSecond int32) error {
	if perSecond <= 0 {
		return nil
	}
	q.rateMu.Lock()
	now := time.Now()
	slot := q.nextSlot
	if slot.Before(now) {
		slot = now
	}
	q.nextSlot = slot.Add(time.Second / time.Duration(perSecond))
	q.rateMu.Unlock()
	if wait := slot.Sub(now); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// attempt makes one delivery attempt and records its outcome.
func (d *deliverer) attempt(ctx context.Context, q *endpointQueue, j job) {
	err := d.attemptErr(ctx, q, j)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		// Shutting down before the attempt was recorded: give the delivery back
		// so the next process attempts it when due instead of after the lease.
		d.release(j.deliveryID)
	default:
		// The lease expires and another pass retries the attempt.
		d.s.logger.WarnContext(ctx, "delivery attempt", "delivery_id", j.deliveryID, "err", err)
	}
}

func (d *deliverer) attemptErr(ctx context.Context, q *endpointQueue, j job) error {
	var dl sqlc.WebhooksDelivery
	var ep sqlc.WebhooksEndpoint
	var err error
	if j.fresh != nil {
		dl, ep = j.fresh.dl, j.fresh.ep
	} else {
		err = d.s.store.InTenant(ctx, j.tenantID, func(tx *store.Tx) error {
			row, err := tx.LoadDelivery(ctx, j.deliveryID)
			dl, ep = row.WebhooksDelivery, row.WebhooksEndpoint
			return err
		})
	}
	if errors.Is(err, store.ErrNotFound) {
		return d.s.store.Global().Dequeue(ctx, j.deliveryID)
	}
	if err != nil {
		return fmt.Errorf("load delivery: %w", err)
	}
	switch {
	case dl.Status == statusSucceeded || dl.Status == statusFailed || dl.Status == statusDead:
		return d.s.store.Global().Dequeue(ctx, j.deliveryID)
	case !ep.Enabled:
		return d.s.store.InTenant(ctx, j.tenantID, func(tx *store.Tx) error {
			if err := tx.FinishAttempt(ctx, sqlc.FinishAttemptParams{
				ID: dl.ID, Status: statusFailed, AttemptCount: dl.AttemptCount, LastStatusCode: dl.LastStatusCode,
				LastError: "webhook disabled", LastAttemptTime: dl.LastAttemptTime,
			}); err != nil {
				return err
			}
			return tx.Dequeue(ctx, dl.ID)
		})
	}
	if ep.Ordered {
		q.orderMu.Lock()
		defer q.orderMu.Unlock()
		older, err := d.s.store.Global().OldestQueuedBefore(ctx, sqlc.OldestQueuedBeforeParams{
			WebhookID: ep.ID, DeliveryID: dl.ID, EventTime: dl.EventTime, Seq: j.seq,
		})
		if err != nil {
			return fmt.Errorf("ordered check: %w", err)
		}
		if older.Count > 0 {
			// An earlier event of this endpoint is still on its way: wait for it.
			// A little later than the earlier one, so it is leased first.
			at := older.NextAttemptTime
			if now := d.s.now(); at.Before(now) {
				at = now
			}
			at = at.Add(orderedStep)
			return d.s.store.Global().RequeueAt(ctx, sqlc.RequeueAtParams{DeliveryID: dl.ID, NextAttemptTime: at})
		}
	}
	if err := q.waitRate(ctx, ep.RateLimitPerSecond); err != nil {
		return err
	}
	select {
	case d.global <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	res, err := d.send(ctx, ep, dl.ID.String(), dl.Body)
	<-d.global
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err() // released by attempt
	}
	o := &outcome{ep: ep, dl: dl, res: res, at: d.s.now()}
	if !ep.Ordered {
		// The delivery stays leased until the recorder commits its outcome; a
		// crash before that lets the lease expire and the attempt is made again
		// with the same webhook-id. The worker need not wait for it.
		d.recorder.submit(o)
		return nil
	}
	// Strict order: the endpoint's next attempt (which waits on orderMu) must not
	// start before this outcome is durable.
	o.done = make(chan error, 1)
	d.recorder.submit(o)
	return <-o.done
}

// result is what one HTTP attempt produced.
type result struct {
	attempt    *webhooksv1.WebhookAttempt
	retryAfter time.Duration
}

func (r result) success() bool {
	c := r.attempt.GetResponseStatusCode()
	return c >= 200 && c < 300
}

// signingKeys returns the endpoint's current key and, during a rotation overlap,
// the previous one.
func (s *Service) signingKeys(ctx context.Context, ep sqlc.WebhooksEndpoint) ([][]byte, error) {
	cur, err := s.sealer.Open(ctx, secretRef(ep.TenantID, ep.ID), ep.Secret)
	if err != nil {
		return nil, fmt.Errorf("open webhook secret: %w", err)
	}
	k, err := secretKey(string(cur))
	if err != nil {
		return nil, err
	}
	keys := [][]byte{k}
	if len(ep.PreviousSecret) > 0 && ep.PreviousSecretExpireTime != nil && ep.PreviousSecretExpireTime.After(s.now()) {
		prev, err := s.sealer.Open(ctx, secretRef(ep.TenantID, ep.ID), ep.PreviousSecret)
		if err != nil {
			return nil, fmt.Errorf("open previous webhook secret: %w", err)
		}
		pk, err := secretKey(string(prev))
		if err != nil {
			return nil, err
		}
		keys = append(keys, pk)
	}
	return keys, nil
}

// customHeaders opens the endpoint's extra headers.
func (s *Service) customHeaders(ctx context.Context, ep sqlc.WebhooksEndpoint) (map[string]string, error) {
	if len(ep.Headers) == 0 {
		return nil, nil
	}
	raw, err := s.sealer.Open(ctx, headersRef(ep.TenantID, ep.ID), ep.Headers)
	if err != nil {
		return nil, fmt.Errorf("open webhook headers: %w", err)
	}
	var h map[string]string
	if err := jsonUnmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("decode webhook headers: %w", err)
	}
	return h, nil
}

const userAgent = "Manushya-Webhooks/1"

// send POSTs body to the endpoint, signed, and returns the attempt. Transport
// failures are attempts too; err is only for problems on our side.
func (d *deliverer) send(ctx context.Context, ep sqlc.WebhooksEndpoint, msgID string, body []byte) (result, error) {
	keys, err := d.s.signingKeys(ctx, ep)
	if err != nil {
		return result{}, err
	}
	custom, err := d.s.customHeaders(ctx, ep)
	if err != nil {
		return result{}, err
	}
	start := d.s.now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.Url, bytes.NewReader(body))
	if err != nil {
		return result{}, fmt.Errorf("build request: %w", err)
	}
	logged := map[string]string{}
	for k, v := range custom {
		req.Header.Set(k, v)
		logged[http.CanonicalHeaderKey(k)] = "[redacted]"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("webhook-id", msgID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(start.Unix(), 10))
	req.Header.Set("webhook-signature", sign(msgID, start, body, keys...))
	maps.Copy(logged, map[string]string{
		"Content-Type": "application/json", "User-Agent": userAgent, "Webhook-Id": msgID,
		"Webhook-Timestamp": strconv.FormatInt(start.Unix(), 10), "Webhook-Signature": "[redacted]",
	})
	limit := d.s.cfg.BodyExcerptBytes
	reqBody, reqCut := excerpt(body, limit)
	a := &webhooksv1.WebhookAttempt{
		RequestHeaders: logged, RequestBody: reqBody, RequestBodyTruncated: reqCut,
		ResponseHeaders: map[string]string{},
	}
	t0 := time.Now()
	resp, err := d.client.Do(req)
	var res result
	if err != nil {
		a.Error = describeTransportError(err)
	} else {
		raw, readErr := io.ReadAll(io.LimitReader(resp.Body, int64(d.s.cfg.ResponseReadBytes)))
		// Drain a little more so the connection can be reused, never the whole body.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		_ = resp.Body.Close()
		a.ResponseStatusCode = int32(resp.StatusCode)
		for k := range resp.Header {
			a.ResponseHeaders[k] = resp.Header.Get(k)
		}
		a.ResponseBody, a.ResponseBodyTruncated = excerpt(raw, limit)
		if len(raw) >= d.s.cfg.ResponseReadBytes {
			a.ResponseBodyTruncated = true
		}
		if readErr != nil {
			a.Error = "read response: " + readErr.Error()
		} else if resp.StatusCode < 200 || resp.StatusCode > 299 {
			a.Error = "HTTP " + strconv.Itoa(resp.StatusCode)
		}
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), start)
	}
	a.Latency = durationpbOf(time.Since(t0))
	a.StartTime = timestamppbOf(start)
	res.attempt = a
	return res, nil
}

// describeTransportError names a failed request without the URL (it may carry
// credentials in its query).
func describeTransportError(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		err = ue.Unwrap()
	}
	switch {
	case errors.Is(err, ErrForbiddenAddress):
		return "refused: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout"):
		return "timeout"
	}
	return err.Error()
}

// excerpt cuts b to at most limit bytes on a UTF-8 boundary.
func excerpt(b []byte, limit int) (string, bool) {
	if len(b) <= limit {
		return strings.ToValidUTF8(string(b), "\uFFFD"), false
	}
	cut := b[:limit]
	for len(cut) > 0 && !utf8.Valid(cut) {
		cut = cut[:len(cut)-1]
	}
	return strings.ToValidUTF8(string(cut), "\uFFFD"), true
}

// maxRetryAfter bounds how long a receiver can push a retry out.
const maxRetryAfter = 10 * time.Hour

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		return min(max(time.Duration(secs)*time.Second, 0), maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}

// backoff is the wait before attempt number n+1 after n failed attempts: the
// schedule's step with ±10% jitter, or Retry-After when that is longer.
func (s *Service) backoff(n int, retryAfter time.Duration) time.Duration {
	step := s.cfg.RetrySchedule[n]
	if step > 0 {
		jitter := time.Duration((rand.Float64()*0.2 - 0.1) * float64(step))
		step += jitter
	}
	return max(step, retryAfter)
}

// recordFailure moves a delivery whose attempt did not succeed on, in tx: a 410
// or five days of failures disable the endpoint, an exhausted schedule makes the
// delivery dead, anything else schedules the next attempt. It returns the final
// outcome for the metrics ("" while retrying) and whether the next attempt is due
// before the scheduler's next scan.
func (s *Service) recordFailure(ctx context.Context, tx *store.Tx, ep sqlc.WebhooksEndpoint, dl sqlc.WebhooksDelivery,
	res result, now time.Time,
) (final string, wake bool, err error) {
	a := res.attempt
	n := dl.AttemptCount + 1
	fin := sqlc.FinishAttemptParams{
		ID: dl.ID, AttemptCount: n, LastStatusCode: a.GetResponseStatusCode(), LastError: a.GetError(), LastAttemptTime: &now,
	}
	if a.GetResponseStatusCode() == http.StatusGone {
		fin.Status = statusFailed
		if err := tx.FinishAttempt(ctx, fin); err != nil {
			return "", false, err
		}
		return finalFailed, false, s.disable(ctx, tx, ep, webhooksv1.WebhookDisabledReason_WEBHOOK_DISABLED_REASON_GONE, nil)
	}
	since, err := tx.MarkEndpointFailing(ctx, sqlc.MarkEndpointFailingParams{ID: ep.ID, Now: now})
	if err != nil {
		return "", false, err
	}
	if since != nil && now.Sub(*since) >= s.cfg.DisableAfter {
		fin.Status = statusFailed
		if err := tx.FinishAttempt(ctx, fin); err != nil {
			return "", false, err
		}
		return finalFailed, false, s.disable(ctx, tx, ep, webhooksv1.WebhookDisabledReason_WEBHOOK_DISABLED_REASON_FAILING, since)
	}
	if int(n) >= len(s.cfg.RetrySchedule) {
		fin.Status = statusDead
		if err := tx.FinishAttempt(ctx, fin); err != nil {
			return "", false, err
		}
		return finalDead, false, tx.Dequeue(ctx, dl.ID)
	}
	next := now.Add(s.backoff(int(n), res.retryAfter))
	fin.Status, fin.NextAttemptTime = statusRetrying, &next
	if err := tx.FinishAttempt(ctx, fin); err != nil {
		return "", false, err
	}
	return "", next.Sub(now) < s.cfg.PollInterval, tx.RequeueAt(ctx, sqlc.RequeueAtParams{DeliveryID: dl.ID, NextAttemptTime: next})
}

// disable turns the endpoint off, fails its open deliveries, empties its queue and
// emits webhook.endpoint.disabled in the same transaction.
func (s *Service) disable(ctx context.Context, tx *store.Tx, ep sqlc.WebhooksEndpoint,
	reason webhooksv1.WebhookDisabledReason, since *time.Time,
) error {
	if err := tx.DisableEndpoint(ctx, sqlc.DisableEndpointParams{ID: ep.ID, DisabledReason: int16(reason)}); err != nil {
		return err
	}
	if err := tx.FailOpenDeliveries(ctx, sqlc.FailOpenDeliveriesParams{WebhookID: ep.ID, Reason: "webhook disabled: " + reason.String()}); err != nil {
		return err
	}
	if err := tx.DequeueWebhook(ctx, ep.ID); err != nil {
		return err
	}
	data := map[string]any{"webhook_id": ep.ID.String(), "url": ep.Url, "reason": reason.String()}
	if since != nil {
		data["failing_since"] = since.UTC().Format(time.RFC3339)
	}
	ev, err := bus.NewEvent(ep.TenantID.String(), "webhook.endpoint.disabled", Source, ep.ID.String(), data)
	if err != nil {
		return err
	}
	s.logger.WarnContext(ctx, "webhook disabled", "webhook_id", ep.ID, "reason", reason.String())
	return tx.Emit(ctx, ev)
}
