package memory

import (
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// BenchmarkEncryptionOverhead measures CreateMemory and GetMemory through the
// gRPC server for a tenant with encrypt_text on and one with it off, in the same
// run and interleaved call by call (so both see the same machine), one call at a
// time: p50/p99 of each, and the overhead of encryption at the p50. Texts are
// about 200 bytes; the embedder is left out (creates return PENDING), so the
// figures are the write and read paths themselves. MEMORY_ENC_BENCH_OPS sets
// the calls per case (default 2000). Run once:
//
//	go test ./services/memory -run '^$' -bench BenchmarkEncryptionOverhead -benchtime 1x
func BenchmarkEncryptionOverhead(b *testing.B) {
	ops := 2000
	if v, err := strconv.Atoi(os.Getenv("MEMORY_ENC_BENCH_OPS")); err == nil && v > 0 {
		ops = v
	}
	tb := setup(b, setupOpts{noWorkers: true})
	_, err := tb.client.UpdateMemorySettings(as("admin-a"), &memoryv1.UpdateMemorySettingsRequest{
		Settings: &memoryv1.MemorySettings{EncryptText: true}, UpdateMask: mask("encrypt_text"),
	})
	require.NoError(b, err)
	gen := newTextGen(7)
	type side struct {
		key    string
		ids    []string
		create []time.Duration
		get    []time.Duration
	}
	on, off := &side{key: "admin-a"}, &side{key: "admin-b"}
	text := func() string {
		s := gen.sentence()
		for len(s) < 200 {
			s += " " + gen.sentence()
		}
		return s
	}
	// Warm up both paths (connections, the identity's data key).
	for range 50 {
		for _, sd := range []*side{on, off} {
			_, err := tb.client.CreateMemory(as(sd.key), &memoryv1.CreateMemoryRequest{Text: text()})
			require.NoError(b, err)
		}
	}
	for b.Loop() {
		for i := range ops {
			// Alternate which side goes first, so neither always follows the other.
			order := []*side{on, off}
			if i%2 == 1 {
				order = []*side{off, on}
			}
			for _, sd := range order {
				req := &memoryv1.CreateMemoryRequest{Text: text()}
				t0 := time.Now()
				resp, err := tb.client.CreateMemory(as(sd.key), req)
				sd.create = append(sd.create, time.Since(t0))
				require.NoError(b, err)
				sd.ids = append(sd.ids, resp.GetMemory().GetId())
			}
		}
		for i := range ops {
			order := []*side{on, off}
			if i%2 == 1 {
				order = []*side{off, on}
			}
			for _, sd := range order {
				t0 := time.Now()
				_, err := tb.client.GetMemory(as(sd.key), &memoryv1.GetMemoryRequest{Id: sd.ids[i]})
				sd.get = append(sd.get, time.Since(t0))
				require.NoError(b, err)
			}
		}
	}
	report := func(name string, enc, plain []time.Duration) {
		pe, pp := quantile(enc, 50), quantile(plain, 50)
		b.ReportMetric(msOf(pe), name+"_on_p50_ms")
		b.ReportMetric(msOf(quantile(enc, 99)), name+"_on_p99_ms")
		b.ReportMetric(msOf(pp), name+"_off_p50_ms")
		b.ReportMetric(msOf(quantile(plain, 99)), name+"_off_p99_ms")
		b.ReportMetric(100*(float64(pe)-float64(pp))/float64(pp), name+"_overhead_p50_%")
		b.ReportMetric(100*(float64(quantile(enc, 99))-float64(quantile(plain, 99)))/float64(quantile(plain, 99)), name+"_overhead_p99_%")
	}
	report("create", on.create, off.create)
	report("get", on.get, off.get)
}

func quantile(lat []time.Duration, p int) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
