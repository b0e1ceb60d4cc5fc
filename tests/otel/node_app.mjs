// A checkout service as a team would write it for Node, with no code of the controller's.
//
//   OFREP_NODE_HOME=.ofrep-node node tests/otel/node_app.mjs OFREP_URL OTLP_ENDPOINT FLAG \
//       [--errors CONTROL,TREATMENT] [--latency-ms CONTROL,TREATMENT]
//       [--missing CONTROL,TREATMENT] [--spans-every-ms N] [--logs-every-ms N]
//
// It evaluates its flag with OpenFeature's server SDK through the OFREP provider,
// records each evaluation with OpenFeature's OpenTelemetry EventHook (a log record
// named feature_flag.evaluation, in the request's trace context), and exports its
// spans and log records with the OpenTelemetry SDK for Node over OTLP/HTTP
// (OTLP_ENDPOINT/v1/traces and OTLP_ENDPOINT/v1/logs, protobuf). The controller
// appears only as the two URLs it is given.
//
// GET /checkout?user=ID serves one request for that user: the new flow when the flag
// is on for them, failing (500) at its flow's error rate and taking about its flow's
// latency. At its flow's --missing rate, pricing the cart misses its price: a
// PriceMissingError the handler catches and records on the request's span with the SDK's
// span.recordException (its type, message and stack); the cart is priced at list price and
// the request succeeds. Once listening it prints {"port": N}; SIGTERM or the end of stdin exports
// what is batched, prints what it served and exits: {"served": {VARIANT: {"requests": N,
// "errors": N}}, "failed_evaluations": N} (a failed evaluation serves the default, in no
// variant). The packages come from OFREP_NODE_HOME (`make ofrep-node`).
import { createRequire } from "node:module";
import http from "node:http";
import path from "node:path";
import { parseArgs } from "node:util";

const home = path.resolve(process.env.OFREP_NODE_HOME ?? ".ofrep-node");
const require = createRequire(path.join(home, "package.json"));
const { NodeSDK, tracing, logs } = require("@opentelemetry/sdk-node");
const { OTLPTraceExporter } = require("@opentelemetry/exporter-trace-otlp-proto");
const { OTLPLogExporter } = require("@opentelemetry/exporter-logs-otlp-proto");
const { trace, SpanKind, SpanStatusCode } = require("@opentelemetry/api");
const { OpenFeature } = require("@openfeature/server-sdk");
const { OFREPProvider } = require("@openfeature/ofrep-provider");
const { EventHook } = require("@openfeature/open-telemetry-hooks");

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    errors: { type: "string", default: "0.05,0.05" },
    "latency-ms": { type: "string", default: "10,10" },
    missing: { type: "string", default: "0,0" },
    // How often the SDK exports its batches; the SDK's own defaults are 5000 and 1000.
    "spans-every-ms": { type: "string", default: "200" },
    "logs-every-ms": { type: "string", default: "200" },
  },
});
const [ofrepUrl, otlpEndpoint, flag] = positionals;
const pair = (text) => text.split(",").map(Number);
const errors = pair(values.errors);
const latencyMs = pair(values["latency-ms"]);
const missing = pair(values.missing);

const sdk = new NodeSDK({
  serviceName: "checkout",
  spanProcessors: [
    new tracing.BatchSpanProcessor(new OTLPTraceExporter({ url: `${otlpEndpoint}/v1/traces` }), {
      scheduledDelayMillis: Number(values["spans-every-ms"]),
    }),
  ],
  logRecordProcessors: [
    new logs.BatchLogRecordProcessor(new OTLPLogExporter({ url: `${otlpEndpoint}/v1/logs` }), {
      scheduledDelayMillis: Number(values["logs-every-ms"]),
    }),
  ],
  instrumentations: [],
});
sdk.start();

await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: ofrepUrl }));
OpenFeature.addHooks(new EventHook());
const flags = OpenFeature.getClient();
const tracer = trace.getTracer("checkout");

// A log-normal factor about 1 (sigma 0.25), as the Python twin draws it.
function jitter() {
  const u = 1 - Math.random();
  const v = Math.random();
  return Math.exp(0.25 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
}

// The price table has no price for a cart.
class PriceMissingError extends Error {
  constructor(cart) {
    super(`no price for ${cart}`);
    this.name = "PriceMissingError";
  }
}

const LIST_PRICE = 100;
const PRICES = new Map([["default", LIST_PRICE]]);

// The cart's price from a table the new flow keys by cart, and misses.
function price(cart) {
  if (!PRICES.has(cart)) throw new PriceMissingError(cart);
  return PRICES.get(cart);
}

const served = {};
let failedEvaluations = 0;

const server = http.createServer((request, response) => {
  const url = new URL(request.url, "http://localhost");
  const user = url.searchParams.get("user") ?? "anonymous";
  const attributes = { "http.request.method": "GET", "url.path": url.pathname };
  tracer.startActiveSpan("GET /checkout", { kind: SpanKind.SERVER, attributes }, async (span) => {
    const details = await flags.getBooleanDetails(flag, false, { targetingKey: user });
    const newFlow = details.value;
    const arm = newFlow ? 1 : 0;
    const failed = Math.random() < errors[arm];
    await new Promise((done) => setTimeout(done, jitter() * latencyMs[arm]));
    const cart = Math.random() < missing[arm] ? `cart-${user.split("-").pop()}` : "default";
    try {
      price(cart);
    } catch (err) {
      if (!(err instanceof PriceMissingError)) throw err;
      span.recordException(err); // priced at list price: the customer sees nothing wrong
    }
    const status = failed ? 500 : 200;
    span.setAttribute("http.response.status_code", status);
    if (failed) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
    if (details.errorCode || details.variant === undefined) {
      failedEvaluations += 1;
    } else {
      const counts = (served[details.variant] ??= { requests: 0, errors: 0 });
      counts.requests += 1;
      counts.errors += failed ? 1 : 0;
    }
    response.writeHead(status, { "Content-Type": "application/json" });
    response.end(JSON.stringify({ user, new_flow: newFlow }));
  });
});

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  server.close();
  await sdk.shutdown(); // what is batched is exported first
  const report = JSON.stringify({ served, failed_evaluations: failedEvaluations });
  process.stdout.write(`${report}\n`, () => process.exit(0));
}
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
