package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/manushya-ai/manushya/pkg/telemetry"
)

func TestNewLoggerRejectsUnknownSettings(t *testing.T) {
	t.Parallel()
	_, err := telemetry.NewLogger("verbose", "json", io.Discard)
	require.ErrorContains(t, err, `unknown log level "verbose"`)
	_, err = telemetry.NewLogger("info", "xml", io.Discard)
	require.ErrorContains(t, err, `unknown log format "xml"`)
}

func TestLoggerAddsContext(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger, err := telemetry.NewLogger("info", "json", &buf)
	require.NoError(t, err)

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(telemetry.WithRequestID(t.Context(), "req-1"), sc)
	require.Equal(t, "req-1", telemetry.RequestID(ctx))

	logger.With("svc", "memory").InfoContext(ctx, "memory created", "id", 7)
	logger.DebugContext(ctx, "too detailed")
	logger.Info("no context")

	dec := json.NewDecoder(&buf)
	var first, second map[string]any
	require.NoError(t, dec.Decode(&first))
	require.NoError(t, dec.Decode(&second))
	require.False(t, dec.More(), "debug record must be filtered at info level")

	require.Equal(t, "memory created", first["msg"])
	require.Equal(t, "memory", first["svc"])
	require.Equal(t, "req-1", first["request_id"])
	require.Equal(t, "0102030405060708090a0b0c0d0e0f10", first["trace_id"])
	require.Equal(t, "0102030405060708", first["span_id"])

	require.NotContains(t, second, "request_id")
	require.NotContains(t, second, "trace_id")
}

func TestTextLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger, err := telemetry.NewLogger("debug", "text", &buf)
	require.NoError(t, err)
	logger.DebugContext(telemetry.WithRequestID(context.Background(), "abc"), "hello")
	require.Contains(t, buf.String(), "msg=hello request_id=abc")
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                           "",
		"127.0.0.1:6379":             "127.0.0.1:6379",
		"redis://127.0.0.1:6379/0":   "redis://127.0.0.1:6379/0",
		"redis://:s3cret@cache:6379": "redis://:****@cache:6379",
		"postgres://app:s3cret@db:5432/manushya?sslmode=disable":     "postgres://app:****@db:5432/manushya?sslmode=disable",
		"postgres://app@db/manushya?password=s3cret&sslmode=require": "postgres://app@db/manushya?password=****&sslmode=require",
		"host=db user=app password=s3cret dbname=manushya":           "host=db user=app password=**** dbname=manushya",
		"host=db password='s3 cret' sslpassword=x":                   "host=db password=**** sslpassword=****",
		"nats://u:p1@n1:4222,nats://u:p2@n2:4222":                    "nats://u:****@n1:4222,nats://u:****@n2:4222",
		"nats://token@n1:4222":                                       "nats://token@n1:4222",
		"postgres://app:bad%zzpass@db/x":                             "postgres://****@db/x",
		"https://hooks.example.test/x?token=abc&x=1#frag":            "https://hooks.example.test/x?token=****&x=1#frag",
		"postgres://app:p%40ss@db/x":                                 "postgres://app:****@db/x",
	} {
		require.Equal(t, want, telemetry.RedactURL(in), "RedactURL(%q)", in)
	}
}

func TestMetricsHandler(t *testing.T) {
	t.Parallel()
	reg := telemetry.NewRegistry()
	// Building the handler twice on one registry must not panic.
	_ = telemetry.MetricsHandler(reg)
	srv := httptest.NewServer(telemetry.MetricsHandler(reg))
	defer srv.Close()

	res, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	require.Equal(t, http.StatusOK, res.StatusCode)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "go_build_info", "promhttp_metric_handler_requests_total"} {
		require.Contains(t, string(body), name)
	}
}

var (
	registerOnce sync.Once
	memExporter  = tracetest.NewInMemoryExporter()
)

// The tracing tests change process-wide OpenTelemetry state and environment
// variables, so they run sequentially.
func TestSetupTracing(t *testing.T) {
	registerOnce.Do(func() {
		autoexport.RegisterSpanExporter("manushya-test", func(context.Context) (sdktrace.SpanExporter, error) {
			return memExporter, nil
		})
	})
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}

	t.Run("nothing configured installs no exporter", func(t *testing.T) {
		otel.SetTracerProvider(noop.NewTracerProvider())
		shutdown, err := telemetry.SetupTracing(t.Context(), "manushya")
		require.NoError(t, err)
		require.NoError(t, shutdown(t.Context()))
		require.IsType(t, noop.NewTracerProvider(), otel.GetTracerProvider())
		require.Contains(t, otel.GetTextMapPropagator().Fields(), "traceparent")
	})

	t.Run("none exporter", func(t *testing.T) {
		t.Setenv("OTEL_TRACES_EXPORTER", "none")
		otel.SetTracerProvider(noop.NewTracerProvider())
		shutdown, err := telemetry.SetupTracing(t.Context(), "manushya")
		require.NoError(t, err)
		require.NoError(t, shutdown(t.Context()))
		require.IsType(t, noop.NewTracerProvider(), otel.GetTracerProvider())
	})

	t.Run("disabled SDK wins", func(t *testing.T) {
		t.Setenv("OTEL_SDK_DISABLED", "true")
		t.Setenv("OTEL_TRACES_EXPORTER", "manushya-test")
		otel.SetTracerProvider(noop.NewTracerProvider())
		_, err := telemetry.SetupTracing(t.Context(), "manushya")
		require.NoError(t, err)
		require.IsType(t, noop.NewTracerProvider(), otel.GetTracerProvider())
	})

	t.Run("configured exporter receives spans", func(t *testing.T) {
		t.Setenv("OTEL_TRACES_EXPORTER", "manushya-test")
		memExporter.Reset()
		shutdown, err := telemetry.SetupTracing(t.Context(), "manushya-memory")
		require.NoError(t, err)
		tp, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
		require.True(t, ok)

		_, span := otel.Tracer("test").Start(t.Context(), "op")
		span.End()
		// The in-memory exporter forgets its spans on shutdown, so flush first.
		require.NoError(t, tp.ForceFlush(t.Context()))
		defer func() { require.NoError(t, shutdown(t.Context())) }()

		spans := memExporter.GetSpans()
		require.Len(t, spans, 1)
		require.Equal(t, "op", spans[0].Name)
		name, ok := spans[0].Resource.Set().Value(attribute.Key("service.name"))
		require.True(t, ok)
		require.Equal(t, "manushya-memory", name.AsString())
	})

	t.Run("unknown exporter is an error", func(t *testing.T) {
		t.Setenv("OTEL_TRACES_EXPORTER", "carrier-pigeon")
		_, err := telemetry.SetupTracing(t.Context(), "manushya")
		require.Error(t, err)
	})
}
