import assert from "node:assert/strict";
import { test } from "node:test";

import { EventSender, makeEvent, retryDelay } from "../src/index.js";
import { startServer } from "./server.js";

const BASE = { flag: "checkout.new-flow", unit: "user-1", arm: "treatment", version: 3 };

function exposures(n, flag = "checkout.new-flow") {
  return Array.from({ length: n }, (_, i) => makeEvent("exposure", { ...BASE, flag, unit: `user-${i}` }));
}

test("retryDelay follows Retry-After, else backs off within the bound", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  const fixed = () => 0.5; // the jitter's middle: 75% of the backoff
  const cases = [
    [["2", 0], 2000],
    [["0", 5], 0],
    [["120", 0], 30_000], // capped
    [["Thu, 01 Jan 2026 00:00:03 GMT", 0], 3000],
    [["Wed, 31 Dec 2025 23:59:00 GMT", 0], 0], // a date passed
    [[null, 0], 375],
    [[null, 3], 3000],
    [["soon", 1], 750], // unreadable: backoff
    [[null, 40], 30_000],
  ];
  for (const [[header, attempt], want] of cases) {
    assert.equal(retryDelay(header, attempt, { now, random: fixed }), want, `${header} ${attempt}`);
  }
});

test("makeEvent makes schema events and refuses what the intake would refuse", () => {
  const exposure = makeEvent("exposure", { ...BASE, ts: 5 });
  assert.match(exposure.id, /^[0-9a-f]{32}$/);
  assert.deepEqual({ ...exposure, id: "x" }, {
    v: 1, type: "exposure", id: "x", ts: 5, flag: "checkout.new-flow", unit: "user-1", arm: "treatment", flag_version: 3,
  });
  const request = makeEvent("request", { ...BASE, error: 1, latencyMs: 12.3456 });
  assert.equal(request.error, true);
  assert.equal(request.latency_ms, 12.35);
  assert.equal(makeEvent("conversion", { ...BASE, value: 4.5 }).value, 4.5);
  assert.equal("value" in makeEvent("conversion", BASE), false);
  const refused = [
    { flag: "" }, { flag: "-x" }, { flag: "a b" }, { flag: "a".repeat(129) }, { flag: 7 },
    { unit: "" }, { unit: "u".repeat(257) }, { unit: null }, { arm: "TREATMENT" }, { version: -1 },
    { version: 1.5 }, { version: 2 ** 31 }, { version: "3" },
  ];
  for (const change of refused) assert.equal(makeEvent("exposure", { ...BASE, ...change }), null, JSON.stringify(change));
  assert.equal(makeEvent("conversion", { ...BASE, value: 2e9 }), null);
  assert.equal(makeEvent("conversion", { ...BASE, value: Number.NaN }), null);
  assert.equal(makeEvent("request", { ...BASE, latencyMs: -1 }), null);
  assert.equal(new Set(exposures(1000).map((e) => e.id)).size, 1000);
});

test("a conversion may carry a name the contract accepts, and only such a name", () => {
  for (const name of ["checkout_completed", "order.paid:v2-eu", "a".repeat(64)]) {
    assert.equal(makeEvent("conversion", { ...BASE, name }).name, name);
  }
  assert.equal("name" in makeEvent("conversion", { ...BASE, name: null }), false);
  assert.equal("name" in makeEvent("exposure", { ...BASE, name: "checkout_completed" }), false);
  for (const name of ["", "Checkout Completed", "9lives", "a".repeat(65), "ok\n", 7, {}]) {
    assert.equal(makeEvent("conversion", { ...BASE, name }), null, JSON.stringify(name));
  }
});

test("batches are at most maxBatch events, sent with the key and headers", async () => {
  const server = await startServer();
  const sender = new EventSender({ baseUrl: `${server.base}/`, apiKey: "k-1", headers: { "X-App": "shop" }, maxBatch: 500 });
  for (const event of exposures(1200)) sender.add(event);
  const counters = await sender.close();
  await server.close();
  assert.deepEqual(server.batches.map((b) => b.body.events.length), [500, 500, 200]);
  assert.deepEqual(counters, { sent: 1200, dropped: 0, rejected: 0, retries: 0 });
  const { headers } = server.batches[0];
  assert.equal(headers.authorization, "Bearer k-1");
  assert.equal(headers["x-app"], "shop");
  assert.equal(headers["content-type"], "application/json");
  assert.equal(new Set(server.events().map((e) => e.id)).size, 1200);
});

test("a 503, a 429 and a dropped connection resend the same batch until a 202", async () => {
  const answers = [
    { status: 503, headers: { "Retry-After": "0" } },
    { status: 429, headers: { "Retry-After": "0" } },
    { destroy: true },
    { status: 202 },
  ];
  const server = await startServer({ intake: (_, attempt) => answers[Math.min(attempt, 3)] });
  const errors = [];
  const sender = new EventSender({ baseUrl: server.base, maxRetryDelayMs: 20, onError: (e) => errors.push(e) });
  for (const event of exposures(10)) sender.add(event);
  const counters = await sender.close();
  await server.close();
  const sent = server.batches.map((b) => JSON.stringify(b.body));
  assert.equal(sent.length, 4);
  assert.equal(new Set(sent).size, 1, "every attempt carries the same events and ids");
  assert.deepEqual(counters, { sent: 10, dropped: 0, rejected: 0, retries: 3 });
  assert.equal(errors.length, 1); // the dropped connection
});

test("a refused batch is counted and reported, and the next one goes on", async () => {
  const server = await startServer({ intake: (_, attempt) => ({ status: attempt === 0 ? 400 : 202 }) });
  const errors = [];
  const sender = new EventSender({ baseUrl: server.base, maxBatch: 5, onError: (e) => errors.push(e.message) });
  for (const event of exposures(8)) sender.add(event);
  const counters = await sender.close();
  await server.close();
  assert.deepEqual(counters, { sent: 3, dropped: 0, rejected: 5, retries: 0 });
  assert.match(errors[0], /refused 5 events: 400/);
});

test("a full queue drops its oldest events, and close gives up at its deadline", async () => {
  let release;
  const held = new Promise((resolve) => {
    release = resolve;
  });
  const server = await startServer({ intake: () => ({ status: 503, headers: { "Retry-After": "60" } }) });
  const sender = new EventSender({
    baseUrl: server.base,
    maxBatch: 5,
    maxQueue: 20,
    flushIntervalMs: 0,
    fetch: async (...args) => {
      await held;
      return fetch(...args);
    },
  });
  const events = exposures(100);
  for (const event of events) sender.add(event); // the first 5 are in flight, held
  assert.equal(sender.queue.length, 20);
  assert.equal(sender.counters.dropped, 75);
  assert.deepEqual(sender.queue.map((e) => e.id), events.slice(80).map((e) => e.id), "the newest are kept");
  release();
  const counters = await sender.close({ timeoutMs: 0 });
  await server.close();
  assert.deepEqual(counters, { sent: 0, dropped: 100, rejected: 0, retries: 0 });
  assert.equal(sender.pending, 0);
});

test("events queued under the batch size go out on the flush interval", async () => {
  const server = await startServer();
  const sender = new EventSender({ baseUrl: server.base, flushIntervalMs: 10 });
  for (const event of exposures(3)) sender.add(event);
  while (server.batches.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(server.batches[0].body.events.length, 3);
  await sender.close();
  await server.close();
});

test("a script that awaits close() lives until its retried batch is sent", async () => {
  const server = await startServer({
    intake: (_, attempt) => (attempt < 2 ? { status: 503, headers: { "Retry-After": "1" } } : { status: 202 }),
  });
  const source = new URL("../src/index.js", import.meta.url).href;
  const script = `
    import { EventSender, makeEvent } from ${JSON.stringify(source)};
    const sender = new EventSender({ baseUrl: ${JSON.stringify(server.base)} });
    sender.add(makeEvent("exposure", { flag: "f", unit: "u", arm: "control", version: 1 }));
    console.log(JSON.stringify(await sender.close({ timeoutMs: 30000 })));`;
  const { execFile } = await import("node:child_process");
  const out = await new Promise((resolve, reject) => {
    execFile(process.execPath, ["--input-type=module", "-e", script], (error, stdout) => (error ? reject(error) : resolve(stdout)));
  });
  await server.close();
  assert.deepEqual(JSON.parse(out), { sent: 1, dropped: 0, rejected: 0, retries: 2 });
});
