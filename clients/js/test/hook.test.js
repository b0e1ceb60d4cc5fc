// The hook on OpenFeature's own server SDK and OFREP provider, against a tiny OFREP server and intake.
import assert from "node:assert/strict";
import { test } from "node:test";

import { OFREPProvider } from "@openfeature/ofrep-provider";
import { OpenFeature } from "@openfeature/server-sdk";

import { RolloutEvents, servedArm } from "../src/index.js";
import { served, startServer } from "./server.js";

const FLAG = "checkout.new-flow";

async function world(flags) {
  const server = await startServer({ flags });
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: server.base }));
  const events = new RolloutEvents({ baseUrl: server.base, flushIntervalMs: 5 });
  OpenFeature.addHooks(events.hook());
  return { server, events, client: OpenFeature.getClient() };
}

async function done({ server, events }) {
  const counters = await events.close();
  OpenFeature.clearHooks();
  await OpenFeature.close();
  await server.close();
  return counters;
}

test("each unit is exposed once per flag version, with the arm it was served", async () => {
  let version = 3;
  const arm = (unit) => (Number(unit.split("-")[1]) % 4 === 0 ? "treatment" : "control");
  const w = await world({ [FLAG]: (unit) => served(arm(unit), version), "other.flag": () => served("control", 1) });
  const units = Array.from({ length: 40 }, (_, i) => `user-${i}`);
  for (let round = 0; round < 3; round++) {
    for (const unit of units) await w.client.getBooleanDetails(FLAG, false, { targetingKey: unit });
  }
  version = 4; // the controller moved the rollout on
  for (const unit of units) await w.client.getBooleanDetails(FLAG, false, { targetingKey: unit });
  await w.client.getBooleanDetails("other.flag", false, { targetingKey: "user-0" });
  const counters = await done(w);
  const events = w.server.events();
  assert.equal(events.length, 81);
  assert.equal(counters.sent, 81);
  for (const v of [3, 4]) {
    const exposed = events.filter((e) => e.flag === FLAG && e.flag_version === v);
    assert.deepEqual(exposed.map((e) => e.unit), units);
    assert.deepEqual(exposed.map((e) => e.arm), units.map(arm));
    assert.ok(exposed.every((e) => e.type === "exposure" && e.v === 1 && Number.isInteger(e.ts)));
  }
});

test("evaluations that served no arm of a rollout expose nothing", async () => {
  const w = await world({
    [FLAG]: () => served("control", 0, "DISABLED"),
    "odd.flag": () => ({ value: true, variant: "on", reason: "SPLIT", metadata: { flag_version: 1 } }),
    "bare.flag": () => ({ value: true, variant: "treatment", reason: "SPLIT" }),
  });
  await w.client.getBooleanDetails(FLAG, false, { targetingKey: "user-1" });
  await w.client.getBooleanDetails("odd.flag", false, { targetingKey: "user-1" });
  await w.client.getBooleanDetails("bare.flag", false, { targetingKey: "user-1" });
  await w.client.getBooleanDetails("unknown.flag", false, { targetingKey: "user-1" });
  const missing = await w.client.getBooleanDetails(FLAG, false, {});
  assert.equal(missing.errorCode, "TARGETING_KEY_MISSING");
  const counters = await done(w);
  assert.equal(w.server.batches.length, 0);
  assert.equal(counters.sent, 0);
});

test("a flag with typed values resolves its string and exposes the arm, not the value", async () => {
  const ranker = (unit) => (unit === "user-1" ? "treatment" : "control");
  const value = (arm) => (arm === "treatment" ? "v2-ranker" : "v1-ranker");
  const w = await world({ [FLAG]: (unit) => ({ ...served(ranker(unit), 5), value: value(ranker(unit)) }) });
  for (const unit of ["user-1", "user-2"]) {
    assert.equal(await w.client.getStringValue(FLAG, "none", { targetingKey: unit }), value(ranker(unit)));
  }
  const wrong = await w.client.getBooleanDetails(FLAG, false, { targetingKey: "user-1" });
  assert.equal(wrong.errorCode, "TYPE_MISMATCH");
  assert.equal(wrong.value, false);
  await done(w);
  const exposed = w.server.events().map((e) => [e.unit, e.arm, e.flag_version]);
  assert.deepEqual(exposed, [["user-1", "treatment", 5], ["user-2", "control", 5]]);
});

test("track converts the unit on every flag it was exposed to, with the arm and version", async () => {
  const w = await world({ [FLAG]: () => served("treatment", 7), "other.flag": () => served("control", 2) });
  for (const flag of [FLAG, "other.flag"]) await w.client.getBooleanDetails(flag, false, { targetingKey: "user-1" });
  assert.equal(w.events.track({ targetingKey: "user-1" }, { value: 42.5 }), 2);
  assert.equal(w.events.track("user-1", { flag: "other.flag" }), 1);
  assert.equal(w.events.track("user-never-seen"), 0);
  const counters = await done(w);
  const conversions = w.server.events().filter((e) => e.type === "conversion");
  const seen = conversions.map((e) => [e.flag, e.arm, e.flag_version, e.value ?? null]);
  assert.deepEqual(seen, [
    [FLAG, "treatment", 7, 42.5],
    ["other.flag", "control", 2, 42.5],
    ["other.flag", "control", 2, null],
  ]);
  assert.equal(counters.untracked, 1);
});

test("OpenFeature's client.track reaches the controller as a conversion named by the event", async () => {
  const server = await startServer({ flags: { [FLAG]: () => served("treatment", 7), "other.flag": () => served("control", 2) } });
  const events = new RolloutEvents({ baseUrl: server.base, flushIntervalMs: 5 });
  OpenFeature.addHooks(events.hook());
  const ofrep = new OFREPProvider({ baseUrl: server.base });
  await OpenFeature.setProviderAndWait(events.provider(ofrep));
  const client = OpenFeature.getClient();
  const context = { targetingKey: "user-1" };
  for (const flag of [FLAG, "other.flag"]) assert.equal(await client.getBooleanValue(flag, false, context), flag === FLAG);
  assert.equal(OpenFeature.providerMetadata.name, ofrep.metadata.name);
  client.track("checkout_completed", context, { value: 99.5 });
  client.track("signup", context);
  client.track("Checkout Completed", context, { value: 5 }); // no conversion name: sent unnamed
  client.track("checkout_completed", { targetingKey: "user-never-seen" });
  const counters = await events.close();
  OpenFeature.clearHooks();
  await OpenFeature.close();
  await server.close();
  const conversions = server.events().filter((e) => e.type === "conversion");
  const seen = conversions.map((e) => [e.flag, e.arm, e.flag_version, e.name ?? null, e.value ?? null]);
  assert.deepEqual(seen, [
    [FLAG, "treatment", 7, "checkout_completed", 99.5],
    ["other.flag", "control", 2, "checkout_completed", 99.5],
    [FLAG, "treatment", 7, "signup", null],
    ["other.flag", "control", 2, "signup", null],
    [FLAG, "treatment", 7, null, 5],
    ["other.flag", "control", 2, null, 5],
  ]);
  assert.equal(counters.unnamed, 1);
  assert.equal(counters.untracked, 1);
  assert.equal(counters.invalid, 0);
});

test("the wrapped provider keeps its own track, and an explicit bad name is invalid", async () => {
  const calls = [];
  const inner = { metadata: { name: "inner" }, track: (...args) => calls.push(args), resolveBooleanEvaluation: () => ({ value: true }) };
  const events = new RolloutEvents({ baseUrl: "http://127.0.0.1:9" });
  const wrapped = events.provider(inner);
  assert.equal(wrapped.metadata.name, "inner");
  assert.deepEqual(wrapped.resolveBooleanEvaluation(), { value: true });
  const good = { flagKey: FLAG, reason: "SPLIT", variant: "control", flagMetadata: { flag_version: 1 } };
  events.expose(good, "u");
  wrapped.track("paid", { targetingKey: "u" }, { value: 1 });
  assert.deepEqual(calls, [["paid", { targetingKey: "u" }, { value: 1 }]]);
  assert.equal(events.track("u", { name: "not a name" }), 0);
  const counters = await events.close({ timeoutMs: 0 });
  assert.equal(counters.invalid, 1);
  assert.equal(counters.sent + counters.dropped, 2); // the exposure and the named conversion
});

test("an arm is served under SPLIT, TARGETING_MATCH, STATIC and CACHED, not DISABLED nor PREREQUISITE_FAILED", () => {
  const details = (reason) => ({ flagKey: FLAG, reason, variant: "treatment", flagMetadata: { flag_version: 4 } });
  const reasons = ["SPLIT", "TARGETING_MATCH", "STATIC", "CACHED", "DISABLED", "DEFAULT", "PREREQUISITE_FAILED"];
  const counted = reasons.map((r) => servedArm(details(r)) !== null);
  assert.deepEqual(counted, [true, true, true, true, false, false, false]);
});

test("measure reports each request's outcome and latency, and rethrows the step's error", async () => {
  const w = await world({ [FLAG]: () => served("treatment", 5) });
  const details = await w.client.getBooleanDetails(FLAG, false, { targetingKey: "user-9" });
  assert.equal(await w.events.measure(details, "user-9", () => "served"), "served");
  await assert.rejects(
    w.events.measure(details, { targetingKey: "user-9" }, async () => {
      throw new Error("the step failed");
    }),
    /the step failed/,
  );
  assert.equal(w.events.outcome(details, "user-9", { error: true }), true);
  await done(w);
  const requests = w.server.events().filter((e) => e.type === "request");
  assert.deepEqual(requests.map((e) => e.error), [false, true, true]);
  assert.ok(requests.slice(0, 2).every((e) => e.latency_ms >= 0 && e.arm === "treatment" && e.flag_version === 5));
  assert.equal("latency_ms" in requests[2], false);
});

test("nothing the app passes makes the package throw", async () => {
  const events = new RolloutEvents({ baseUrl: "http://127.0.0.1:9", maxUnits: 2 });
  const hook = events.hook();
  const hostile = [undefined, null, 7, "x", {}, { reason: "SPLIT", variant: "treatment", flagMetadata: null }];
  for (const details of hostile) {
    assert.doesNotThrow(() => hook.after(undefined, details));
    assert.doesNotThrow(() => hook.after({ context: { targetingKey: {} } }, details));
    assert.equal(events.outcome(details, "u"), false);
  }
  const good = { flagKey: FLAG, reason: "SPLIT", variant: "treatment", flagMetadata: { flag_version: 1 } };
  assert.equal(events.expose(good, { targetingKey: "u".repeat(300) }), false); // over the intake's bound
  assert.equal(events.track(undefined), 0);
  assert.equal(events.track("u", { value: Number.POSITIVE_INFINITY }), 0);
  for (const unit of ["a", "b", "c"]) events.expose(good, unit);
  assert.equal(events.exposed.size, 2, "units remembered are bounded");
  assert.equal(servedArm({ ...good, errorCode: "GENERAL" }), null);
  const counters = await events.close({ timeoutMs: 0 });
  assert.equal(counters.invalid, 1);
  assert.equal(counters.sent + counters.dropped, 3);
});
