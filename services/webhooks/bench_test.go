package webhooks_test

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/services/webhooks"
)

// latencyReceiver records, per delivery, the time from the event's publication
// (carried in its data) to its arrival.
type latencyReceiver struct {
	*receiver
	mu   sync.Mutex
	lat  []time.Duration
	seen map[string]bool
}

func newLatencyReceiver(tb testing.TB) *latencyReceiver {
	lr := &latencyReceiver{seen: map[string]bool{}}
	lr.receiver = newReceiver(tb, nil)
	lr.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Data struct {
				Sent int64 `json:"sent"`
			} `json:"data"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		now := time.Now()
		lr.mu.Lock()
		if id := r.Header.Get("webhook-id"); !lr.seen[id] {
			lr.seen[id] = true
			lr.lat = append(lr.lat, now.Sub(time.Unix(0, body.Data.Sent)))
		}
		lr.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	return lr
}

func (lr *latencyReceiver) count() int {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return len(lr.lat)
}

func (lr *latencyReceiver) percentile(p float64) time.Duration {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	s := slices.Clone(lr.lat)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// publishPaced publishes n events at rate per second, each carrying its send time.
func publishPaced(b *testing.B, tb *testBundle, n, rate int) {
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		ev, err := bus.NewEvent(tenantA, "memory.created", "/manushya/bench", uuid.NewString(),
			map[string]any{"sent": time.Now().UnixNano()})
		require.NoError(b, err)
		payload, err := ev.MarshalCloudEvent()
		require.NoError(b, err)
		_, err = tb.bus.JS.PublishAsync(ev.NATSSubject(), payload, jetstream.WithMsgID(ev.ID))
		require.NoError(b, err)
	}
	<-tb.bus.JS.PublishAsyncComplete()
}

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkDelivery publishes BENCH_EVENTS events (default 5000) at BENCH_RATE per
// second (default 1000) to one healthy local receiver and reports deliveries per
// second and event-to-delivery latency percentiles. With the "hanging" variant a
// second endpoint subscribed to the same events never answers (until the 15 s
// timeout) in the same run.
//
//	go test ./services/webhooks -run '^$' -bench BenchmarkDelivery -benchtime 1x
func BenchmarkDelivery(b *testing.B) {
	for _, hanging := range []bool{false, true} {
		name := "healthy_only"
		if hanging {
			name = "with_hanging_endpoint"
		}
		b.Run(name, func(b *testing.B) {
			n, rate := benchEnv("BENCH_EVENTS", 5000), benchEnv("BENCH_RATE", 1000)
			tb := setup(b, func(c *webhooks.Config) {
				c.RetrySchedule = webhooks.DefaultRetrySchedule()
				c.Timeout = 15 * time.Second
				c.PollInterval = time.Second
				c.ConsumerWorkers = 16
			})
			lr := newLatencyReceiver(b)
			tb.createWebhook(b, tenantA, lr.URL, "memory.*")
			if hanging {
				release := make(chan struct{})
				hang := newReceiver(b, func(r *http.Request, _ int) int {
					select {
					case <-release:
					case <-r.Context().Done():
					}
					return http.StatusOK
				})
				b.Cleanup(func() { close(release) })
				tb.createWebhook(b, tenantA, hang.URL, "memory.*")
			}
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				publishPaced(b, tb, n, rate)
				if os.Getenv("BENCH_DEBUG") != "" {
					for _, c := range []string{webhooks.ConsumerDispatcher, webhooks.ConsumerEventStore} {
						cons, err := tb.bus.JS.Consumer(b.Context(), bus.StreamName, c)
						require.NoError(b, err)
						info, err := cons.Info(b.Context())
						require.NoError(b, err)
						b.Logf("after publish %s: %s pending=%d ackpending=%d delivered=%d", time.Since(start), c, info.NumPending, info.NumAckPending, lr.count())
					}
				}
				require.Eventually(b, func() bool { return lr.count() >= n }, 2*time.Minute, 5*time.Millisecond)
				el := time.Since(start)
				b.ReportMetric(float64(n)/el.Seconds(), "deliveries/s")
				b.ReportMetric(float64(lr.percentile(0.50).Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(lr.percentile(0.99).Microseconds())/1000, "p99_ms")
			}
		})
	}
}
