package audit

import "context"

// Sink takes audit records. Record must not block the caller for long (it runs
// on request paths) and must not fail the caller: a sink that cannot keep a
// record counts and logs it.
type Sink interface {
	Record(ctx context.Context, r Record)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, r Record)

// Record implements Sink.
func (f SinkFunc) Record(ctx context.Context, r Record) { f(ctx, r) }

// Emit hands r to s, if there is a sink: code that may run without one (a
// service built for a test) calls Emit rather than checking.
func Emit(ctx context.Context, s Sink, r Record) {
	if s == nil {
		return
	}
	r.fill()
	s.Record(ctx, r)
}
