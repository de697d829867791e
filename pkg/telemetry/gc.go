package telemetry

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target the binary runs with when
// GOGC is not set. Go's default of 100 collects every time the heap doubles; this
// server's live heap is small (compiled policies, caches) while every request
// allocates, so at 100 it collects several times a second under load and the
// collector's assists land on request goroutines as tail latency (measured on the
// policy decision and login-flood benchmarks, docs/benchmarks.md). 200 halves the
// collections for a heap at most three times the live data instead of twice; set
// GOGC (and GOMEMLIMIT) to choose otherwise.
const DefaultGCPercent = 200

// TuneGC applies DefaultGCPercent unless the operator set GOGC. The binary calls it
// at start, and benchmarks call it so they measure with the same collector pace.
func TuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(DefaultGCPercent)
	}
}
