// The hook's evaluation events on the app's spans, recorded through the real OpenTelemetry SDK
// (a tracer exporting to memory, with Node's async-local context) over OpenFeature's OFREP provider.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, test } from "node:test";

import { OFREPProvider } from "@openfeature/ofrep-provider";
import { OpenFeature } from "@openfeature/server-sdk";
import * as otel from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

import { EVENT, RolloutEvents, evaluationAttributes, otelImport, recordEvaluation } from "../src/index.js";
import { served, startServer } from "./server.js";

const FLAG = "checkout.new-flow";
const exporter = new InMemorySpanExporter();
const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer("test");

before(() => {
  otel.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
});

after(() => {
  otel.context.disable();
});

async function world(flags, options = {}) {
  const server = await startServer({ flags });
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: server.base }));
  const events = new RolloutEvents({ baseUrl: server.base, flushIntervalMs: 5, ...options });
  OpenFeature.addHooks(events.hook());
  return { server, events, client: OpenFeature.getClient() };
}

async function done({ server, events }) {
  await events.close();
  OpenFeature.clearHooks();
  await OpenFeature.close();
  await server.close();
}

/** Run `step` in a new active span named `name`; the events recorded on it once ended. */
async function inSpan(name, step) {
  exporter.reset();
  await tracer.startActiveSpan(name, async (span) => {
    await step();
    span.end();
  });
  const [span] = exporter.getFinishedSpans().filter((s) => s.name === name);
  assert.ok(span.events.every((e) => e.name === EVENT));
  return span.events.map((e) => e.attributes);
}

test("the optional import finds @opentelemetry/api where it is installed", async () => {
  assert.equal(await otelImport, otel);
});

test("each evaluation in a span adds one event with the arm, the unit and the flag version", async () => {
  const arm = (unit) => (Number(unit.split("-")[1]) % 3 === 0 ? "treatment" : "control");
  const w = await world({ [FLAG]: (unit) => served(arm(unit), 3), "off.flag": () => served("control", 0, "DISABLED") });
  const units = Array.from({ length: 12 }, (_, i) => `user-${i}`);
  const recorded = await inSpan("GET /checkout", async () => {
    for (const unit of units) await w.client.getBooleanValue(FLAG, false, { targetingKey: unit });
    await w.client.getBooleanValue("off.flag", true, { targetingKey: "user-1" });
  });
  await done(w);
  assert.equal(recorded.length, units.length + 1);
  recorded.slice(0, units.length).forEach((attributes, i) => {
    assert.deepEqual(attributes, {
      "feature_flag.key": FLAG,
      "feature_flag.provider.name": "OpenFeature Remote Evaluation Protocol Server",
      "feature_flag.result.reason": "split",
      "feature_flag.result.variant": arm(units[i]),
      "feature_flag.result.value": String(arm(units[i]) === "treatment"),
      "feature_flag.context.id": units[i],
      "feature_flag.version": "3",
    });
  });
  const disabled = recorded.at(-1);
  assert.equal(disabled["feature_flag.result.reason"], "disabled");
  assert.equal(disabled["feature_flag.version"], "0");
});

test("an evaluation that failed records its error type and no version", async () => {
  const w = await world({ [FLAG]: () => served("treatment", 4) });
  const recorded = await inSpan("GET /checkout", async () => {
    await w.client.getStringValue("unknown.flag", "fallback", { targetingKey: "user-1" });
    await w.client.getBooleanValue(FLAG, false, {});
  });
  await done(w);
  const [unknown, keyless] = recorded;
  assert.equal(unknown["error.type"], "flag_not_found");
  assert.equal(unknown["feature_flag.result.reason"], "error");
  assert.equal(unknown["feature_flag.result.value"], '"fallback"');
  assert.equal(unknown["feature_flag.context.id"], "user-1");
  assert.equal("feature_flag.version" in unknown, false);
  assert.equal(keyless["error.type"], "targeting_key_missing");
  assert.equal("feature_flag.context.id" in keyless, false);
});

test("nothing is recorded outside a span, nor with traces off", async () => {
  const on = await world({ [FLAG]: () => served("treatment", 4) });
  exporter.reset();
  await on.client.getBooleanValue(FLAG, false, { targetingKey: "user-1" }); // no active span
  assert.equal(exporter.getFinishedSpans().length, 0);
  const counted = await inSpan("GET /on", () => on.client.getBooleanValue(FLAG, false, { targetingKey: "user-1" }));
  assert.equal(counted.length, 1);
  await done(on);
  const off = await world({ [FLAG]: () => served("treatment", 4) }, { traces: false });
  const recorded = await inSpan("GET /off", () => off.client.getBooleanValue(FLAG, false, { targetingKey: "user-2" }));
  await done(off);
  assert.deepEqual(recorded, []);
  assert.equal(off.server.events().length, 1, "the exposure still went to the intake");
});

test("an app's own copy of the API, passed as `otel`, is the one used", async () => {
  const added = [];
  const span = { isRecording: () => true, addEvent: (name, attributes) => added.push([name, attributes]) };
  const own = { context: { active: () => "ctx" }, trace: { getSpan: (ctx) => (ctx === "ctx" ? span : undefined) } };
  const w = await world({ [FLAG]: () => served("control", 8) }, { otel: own });
  await w.client.getBooleanValue(FLAG, true, { targetingKey: "user-5" });
  await done(w);
  assert.equal(added.length, 1);
  assert.equal(added[0][0], EVENT);
  assert.equal(added[0][1]["feature_flag.version"], "8");
});

test("hostile details, contexts and tracers never throw", () => {
  const hostile = [undefined, null, 7, "x", {}, { reason: 5, errorCode: {}, flagMetadata: null }];
  const cyclic = {};
  cyclic.self = cyclic;
  for (const details of [...hostile, { flagKey: FLAG, value: cyclic, reason: "SPLIT" }]) {
    assert.doesNotThrow(() => evaluationAttributes(undefined, details));
    assert.doesNotThrow(() => evaluationAttributes({ context: { targetingKey: {} } }, details));
  }
  const broken = { context: { active: () => ({}) }, trace: { getSpan: () => { throw new Error("broken"); } } };
  assert.equal(recordEvaluation(broken, {}, {}), false);
  assert.equal(recordEvaluation(null, {}, {}), false);
  const hook = new RolloutEvents({ baseUrl: "http://127.0.0.1:9", otel: broken }).hook();
  assert.doesNotThrow(() => hook.finally(undefined, undefined));
  assert.deepEqual(evaluationAttributes({ flagKey: "f", defaultValue: 1 }, undefined), {
    "feature_flag.key": "f",
    "feature_flag.result.reason": "unknown",
    "feature_flag.result.value": "1",
  });
});

test("without @opentelemetry/api the hook still reports exposures, and records nothing", () => {
  const missing = `export async function resolve(specifier, context, next) {
    if (specifier.startsWith("@opentelemetry/")) throw Object.assign(new Error("not installed"), { code: "ERR_MODULE_NOT_FOUND" });
    return next(specifier, context);
  }`;
  const app = `
    import { register } from "node:module";
    register("data:text/javascript," + encodeURIComponent(${JSON.stringify(missing)}));
    const { RolloutEvents, otelImport } = await import(${JSON.stringify(new URL("../src/index.js", import.meta.url).href)});
    const api = await otelImport;
    const events = new RolloutEvents({ baseUrl: "http://127.0.0.1:9" });
    const hook = events.hook();
    const details = { flagKey: "f", value: true, variant: "treatment", reason: "SPLIT", flagMetadata: { flag_version: 2 } };
    hook.after({ context: { targetingKey: "user-1" } }, details);
    hook.finally({ context: { targetingKey: "user-1" } }, details);
    const { pending } = events.counters;
    await events.close({ timeoutMs: 0 });
    console.log(JSON.stringify({ api, pending }));`;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", app], { encoding: "utf8", timeout: 60_000 });
  assert.deepEqual(JSON.parse(out), { api: null, pending: 1 });
});
