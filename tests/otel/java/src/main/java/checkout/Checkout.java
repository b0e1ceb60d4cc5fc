// A checkout service as a team would write it for Java, with no code of the controller's.
//
//   OTEL_EXPORTER_OTLP_ENDPOINT=OTLP_ENDPOINT OTEL_SERVICE_NAME=checkout \
//   java -javaagent:target/agent/opentelemetry-javaagent.jar -jar target/checkout.jar \
//       OFREP_URL FLAG [--errors CONTROL,TREATMENT] [--latency-ms CONTROL,TREATMENT]
//       [--missing CONTROL,TREATMENT] [--port N]
//
// The OpenTelemetry Java agent makes each request's server span (its instrumentation of
// the JDK's HTTP server), with the response's status, and exports the spans over OTLP/HTTP
// to where OTEL_EXPORTER_OTLP_ENDPOINT says: the agent is configured as a team configures
// it, so the endpoint is not an argument. The flag is evaluated with OpenFeature's Java SDK
// through the OFREP provider, and each evaluation is recorded on the request's span as the
// SDK's own Telemetry helper shapes it (a feature_flag.evaluation event with the targeting
// key as feature_flag.context.id). The controller appears only as the two URLs.
//
// GET /checkout?user=ID serves one request for that user: the new flow when the flag is on
// for them, failing (500) at its flow's error rate and taking about its flow's latency. At
// its flow's --missing rate, pricing the cart misses its price: a PriceMissingException the
// handler catches and records on the request's span (Span.current().recordException: its
// type, message and stack trace); the cart is priced at list price and the request succeeds.
// Once listening it prints {"port": N}; the end of stdin or SIGTERM stops it, and the agent
// exports what it has batched before the JVM exits.
package checkout;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.openfeature.contrib.providers.ofrep.OfrepProvider;
import dev.openfeature.contrib.providers.ofrep.OfrepProviderOptions;
import dev.openfeature.sdk.Client;
import dev.openfeature.sdk.EvaluationEvent;
import dev.openfeature.sdk.FlagEvaluationDetails;
import dev.openfeature.sdk.Hook;
import dev.openfeature.sdk.HookContext;
import dev.openfeature.sdk.ImmutableContext;
import dev.openfeature.sdk.OpenFeatureAPI;
import dev.openfeature.sdk.Telemetry;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.common.AttributesBuilder;
import io.opentelemetry.api.trace.Span;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadLocalRandom;

public final class Checkout {

    private final Client flags;
    private final String flag;
    private final double[] errors;
    private final double[] latencyMs;
    private final double[] missing;
    private final Map<String, Integer> prices = Map.of("default", 100);

    private Checkout(
            Client flags, String flag, double[] errors, double[] latencyMs, double[] missing) {
        this.flags = flags;
        this.flag = flag;
        this.errors = errors;
        this.latencyMs = latencyMs;
        this.missing = missing;
    }

    // --8<-- [start:hook]
    /** Records each evaluation as an event on the current span, as OpenFeature's Telemetry
     * shapes it for the OpenTelemetry semantic conventions. */
    static final class EvaluationEvents implements Hook<Object> {
        @Override
        public void finallyAfter(
                HookContext<Object> context,
                FlagEvaluationDetails<Object> details,
                Map<String, Object> hints) {
            EvaluationEvent event = Telemetry.createEvaluationEvent(context, details);
            AttributesBuilder attributes = Attributes.builder();
            event.getAttributes().forEach((key, value) -> attributes.put(key, String.valueOf(value)));
            Span.current().addEvent(event.getName(), attributes.build());
        }
    }
    // --8<-- [end:hook]

    public static void main(String[] args) throws Exception {
        Map<String, String> options = Arguments.options(args);
        String[] positional = Arguments.positional(args);
        String ofrepUrl = positional[0];
        String flag = positional[1];

        // --8<-- [start:setup]
        OpenFeatureAPI api = OpenFeatureAPI.getInstance();
        api.setProviderAndWait(OfrepProvider.constructProvider(
                OfrepProviderOptions.builder().baseUrl(ofrepUrl).build()));
        api.addHooks(new EvaluationEvents());
        Client flags = api.getClient();
        // --8<-- [end:setup]

        Checkout app = new Checkout(
                flags,
                flag,
                Arguments.pair(options.getOrDefault("errors", "0.05,0.05")),
                Arguments.pair(options.getOrDefault("latency-ms", "10,10")),
                Arguments.pair(options.getOrDefault("missing", "0,0")));
        int port = Integer.parseInt(options.getOrDefault("port", "0"));
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        ExecutorService workers = Executors.newFixedThreadPool(16);
        server.setExecutor(workers);
        server.createContext("/checkout", app::serve);
        server.start();
        System.out.println("{\"port\": " + server.getAddress().getPort() + "}");
        System.out.flush();

        System.in.transferTo(OutputStream.nullOutputStream()); // until stdin ends
        server.stop(0);
        workers.shutdown();
        api.shutdown();
        System.exit(0); // the agent's shutdown hook exports what is batched
    }

    private void serve(HttpExchange exchange) throws IOException {
        String user = Arguments.query(exchange.getRequestURI().getRawQuery(), "user");
        // --8<-- [start:evaluate]
        boolean newFlow = flags.getBooleanValue(flag, false, new ImmutableContext(user));
        // --8<-- [end:evaluate]
        int arm = newFlow ? 1 : 0;
        ThreadLocalRandom random = ThreadLocalRandom.current();
        boolean failed = random.nextDouble() < errors[arm];
        pause(Math.exp(0.25 * random.nextGaussian()) * latencyMs[arm]);
        String cart = random.nextDouble() < missing[arm]
                ? "cart-" + user.substring(user.lastIndexOf('-') + 1)
                : "default";
        try {
            price(cart);
        } catch (PriceMissingException e) { // priced at list price: the customer sees nothing
            Span.current().recordException(e);
        }
        byte[] body = ("{\"user\": \"" + user + "\", \"new_flow\": " + newFlow + "}")
                .getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", "application/json");
        exchange.sendResponseHeaders(failed ? 500 : 200, body.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(body);
        }
    }

    /** The cart's price, from a table the new flow keys by cart, and misses. */
    private int price(String cart) {
        Integer found = prices.get(cart);
        if (found == null) {
            throw new PriceMissingException(cart);
        }
        return found;
    }

    private static void pause(double ms) {
        try {
            Thread.sleep((long) ms, (int) ((ms % 1) * 1_000_000));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** The command line: positional arguments, and --name value options. */
    static final class Arguments {
        private Arguments() {}

        static Map<String, String> options(String[] args) {
            Map<String, String> found = new java.util.HashMap<>();
            for (int i = 0; i < args.length; i++) {
                if (args[i].startsWith("--")) {
                    found.put(args[i].substring(2), args[++i]);
                }
            }
            return found;
        }

        static String[] positional(String[] args) {
            java.util.List<String> found = new java.util.ArrayList<>();
            for (int i = 0; i < args.length; i++) {
                if (args[i].startsWith("--")) {
                    i++;
                } else {
                    found.add(args[i]);
                }
            }
            if (found.size() != 2) {
                System.err.println("usage: checkout OFREP_URL FLAG [--errors C,T] [--latency-ms C,T]"
                        + " [--missing C,T] [--port N]");
                System.exit(2);
            }
            return found.toArray(new String[0]);
        }

        static double[] pair(String text) {
            String[] parts = text.split(",");
            return new double[] {Double.parseDouble(parts[0]), Double.parseDouble(parts[1])};
        }

        static String query(String raw, String name) {
            if (raw != null) {
                for (String part : raw.split("&")) {
                    int equals = part.indexOf('=');
                    if (equals > 0 && part.substring(0, equals).equals(name)) {
                        return URLDecoder.decode(part.substring(equals + 1), StandardCharsets.UTF_8);
                    }
                }
            }
            return "anonymous";
        }
    }
}
