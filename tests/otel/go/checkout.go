package main

// What a team writes to guard its service: OpenTelemetry's tracing, OpenFeature with
// the OFREP provider and the OpenTelemetry hook, and the request handler. docs/otel.md
// shows the parts between the --8<-- markers.

// --8<-- [start:imports]
import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	otelhook "github.com/open-feature/go-sdk-contrib/hooks/open-telemetry/pkg"
	"github.com/open-feature/go-sdk-contrib/providers/ofrep"
	"github.com/open-feature/go-sdk/openfeature"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// --8<-- [end:imports]

// setUp exports spans over OTLP/HTTP (protobuf) to otlpEndpoint/v1/traces and evaluates
// flags through the OFREP server at ofrepURL, each evaluation recorded on the current span.
func setUp(ctx context.Context, ofrepURL, otlpEndpoint string) (
	*sdktrace.TracerProvider, *openfeature.Client, error,
) {
	// --8<-- [start:setup]
	exporter, err := otlptracehttp.New(ctx,
		otlptracehttp.WithEndpointURL(otlpEndpoint+"/v1/traces"))
	if err != nil {
		return nil, nil, err
	}
	tracing := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter, sdktrace.WithBatchTimeout(200*time.Millisecond)),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("checkout"))),
	)
	otel.SetTracerProvider(tracing)

	if err := openfeature.SetProviderAndWait(ofrep.NewProvider(ofrepURL)); err != nil {
		return nil, nil, err
	}
	openfeature.AddHooks(otelhook.NewTracesHook()) // a feature_flag.evaluation span event
	flags := openfeature.NewClient("checkout")
	// --8<-- [end:setup]
	return tracing, flags, nil
}

// handler serves GET /checkout?user=ID inside a SERVER span of otelhttp's, which records
// the answer's status (and an ERROR status for a 5xx); the hook puts the evaluation on it.
// The new flow, for the users the flag is on for, fails and takes time at its own rates.
func handler(cfg config, flags *openfeature.Client) http.Handler {
	// --8<-- [start:handler]
	mux := http.NewServeMux()
	mux.HandleFunc("GET /checkout", func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user") // the unit: OpenFeature's targeting key
		// r.Context() holds the request's span, on which the hook records the evaluation
		newFlow, _ := flags.BooleanValue(r.Context(), cfg.flag, false,
			openfeature.NewEvaluationContext(user, nil))
		// --8<-- [end:handler]
		arm := 0
		if newFlow {
			arm = 1
		}
		time.Sleep(time.Duration(jitter() * cfg.latencyMs[arm] * float64(time.Millisecond)))
		cart := "default"
		if rand.Float64() < cfg.missing[arm] {
			cart = "cart-" + user[strings.LastIndex(user, "-")+1:]
		}
		if _, err := price(cart); err != nil {
			// priced at list price: the customer sees nothing wrong; the span keeps the error
			trace.SpanFromContext(r.Context()).RecordError(err, trace.WithStackTrace(true))
		}
		status := http.StatusOK
		if rand.Float64() < cfg.errors[arm] {
			status = http.StatusInternalServerError
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"user": user, "new_flow": newFlow})
	})
	// --8<-- [start:server]
	return otelhttp.NewHandler(mux, "GET /checkout") // a SERVER span per request
	// --8<-- [end:server]
}

// PriceMissingError says the price table has no price for a cart.
type PriceMissingError struct{ Cart string }

func (e *PriceMissingError) Error() string { return "no price for " + e.Cart }

var prices = map[string]int{"default": 100}

// price is the cart's price, from a table the new flow keys by cart, and misses.
func price(cart string) (int, error) {
	found, ok := prices[cart]
	if !ok {
		return 0, &PriceMissingError{Cart: cart}
	}
	return found, nil
}

// jitter is a log-normal factor about 1 (sigma 0.25), as the Python and Node twins draw it.
func jitter() float64 {
	return math.Exp(0.25 * rand.NormFloat64())
}
