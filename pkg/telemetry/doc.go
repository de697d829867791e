// Package telemetry sets up what every manushya process reports about itself:
// structured logs (log/slog) that carry the request id and the active trace,
// OpenTelemetry tracing configured from the standard OTEL_* environment variables,
// and a Prometheus registry with the Go runtime and process collectors.
//
// It also holds RedactURL, used wherever a connection string might be logged or
// printed, so secrets never reach logs or -print-config output.
package telemetry
