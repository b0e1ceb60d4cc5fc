// A checkout service as a team would write it in Go, with no code of the controller's.
//
//	checkout OFREP_URL OTLP_ENDPOINT FLAG [--errors CONTROL,TREATMENT] \
//	    [--latency-ms CONTROL,TREATMENT] [--missing CONTROL,TREATMENT] [--port N]
//
// It evaluates its flag with OpenFeature's Go SDK through the OFREP provider,
// records each evaluation with the OpenTelemetry hook of go-sdk-contrib (a
// feature_flag.evaluation event on the request's span, which otelhttp's
// handler makes), and exports its spans with the OpenTelemetry Go SDK over
// OTLP/HTTP (OTLP_ENDPOINT/v1/traces, protobuf). The controller appears only
// as the two URLs it is given.
//
// GET /checkout?user=ID serves one request for that user: the new flow when
// the flag is on for them, failing (500) at its flow's error rate and taking
// about its flow's latency. At its flow's --missing rate, pricing the cart
// misses its price: a *PriceMissingError the handler records on the request's
// span with the SDK's span.RecordError (its type, message and stack trace);
// the cart is priced at list price and the request succeeds. Once listening
// on 127.0.0.1 (port N, or one the
// system picks) it prints {"port": N}; SIGTERM or the end of stdin exports
// what is batched and exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// perArm holds a value for each flow: [0] the old one (control), [1] the new one.
type perArm [2]float64

type config struct {
	ofrepURL, otlpEndpoint, flag string
	errors, latencyMs, missing   perArm
	port                         int
}

func main() {
	cfg, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkout:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "checkout:", err)
		os.Exit(1)
	}
}

// parseArgs reads three positional arguments with the options before, between or after them.
func parseArgs(args []string) (config, error) {
	options := flag.NewFlagSet("checkout", flag.ContinueOnError)
	errorRates := options.String("errors", "0.05,0.05", "error rate of each flow: CONTROL,TREATMENT")
	latency := options.String("latency-ms", "10,10", "latency of each flow in ms: CONTROL,TREATMENT")
	missing := options.String("missing", "0,0", "rate of each flow's missing prices: CONTROL,TREATMENT")
	port := options.Int("port", 0, "the loopback port to listen on (0: any free one)")
	var positional []string
	for {
		if err := options.Parse(args); err != nil {
			return config{}, err
		}
		if args = options.Args(); len(args) == 0 {
			break
		}
		positional, args = append(positional, args[0]), args[1:]
	}
	if len(positional) != 3 {
		return config{}, errors.New("usage: checkout OFREP_URL OTLP_ENDPOINT FLAG [options]")
	}
	cfg := config{ofrepURL: positional[0], otlpEndpoint: positional[1], flag: positional[2], port: *port}
	var err error
	if cfg.errors, err = parsePair(*errorRates); err != nil {
		return config{}, fmt.Errorf("--errors: %w", err)
	}
	if cfg.latencyMs, err = parsePair(*latency); err != nil {
		return config{}, fmt.Errorf("--latency-ms: %w", err)
	}
	if cfg.missing, err = parsePair(*missing); err != nil {
		return config{}, fmt.Errorf("--missing: %w", err)
	}
	return cfg, nil
}

func parsePair(text string) (perArm, error) {
	parts := strings.Split(text, ",")
	if len(parts) != 2 {
		return perArm{}, fmt.Errorf("%q is not CONTROL,TREATMENT", text)
	}
	var pair perArm
	for i, part := range parts {
		value, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || value < 0 {
			return perArm{}, fmt.Errorf("%q is not a number from 0", part)
		}
		pair[i] = value
	}
	return pair, nil
}

func run(cfg config) error {
	tracing, flags, err := setUp(context.Background(), cfg.ofrepURL, cfg.otlpEndpoint)
	if err != nil {
		return err
	}
	listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.port)))
	if err != nil {
		return err
	}
	server := &http.Server{Handler: handler(cfg, flags), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	ready, _ := json.Marshal(map[string]int{"port": listener.Addr().(*net.TCPAddr).Port})
	fmt.Println(string(ready))

	waitForStop()
	return stop(server, served, tracing)
}

// waitForStop returns on SIGTERM or SIGINT, or when stdin ends (the test closes it).
func waitForStop() {
	stopping := make(chan struct{}, 2)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-signals; stopping <- struct{}{} }()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stopping <- struct{}{} }()
	<-stopping
}

// stop lets the requests in flight finish (their spans end), then exports what is batched.
func stop(server *http.Server, served <-chan error, tracing *sdktrace.TracerProvider) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := server.Shutdown(ctx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	openfeature.Shutdown()
	return tracing.Shutdown(ctx)
}
