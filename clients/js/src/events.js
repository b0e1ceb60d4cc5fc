// The events of schemas/event.schema.json, made valid or not at all, and a
// sender that posts them in batches to the controller's HTTP intake.
//
// POST /v1/events answers 202 once the broker acknowledged the batch; 503 and
// 429 carry Retry-After and mean "send the same batch again"; any other 4xx
// refuses the batch for good. A batch keeps its events (and their ids) until
// it is answered, so the intake's deduplication counts a retried batch once.

const FLAG = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}(?:@[a-z][a-z0-9_-]{0,31})?$/;
/** What may name a conversion (schemas/event.schema.json): a letter, then up to 63 letters, digits and _.:- */
export const CONVERSION_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;
const ARMS = new Set(["treatment", "control"]);
const MAX_VERSION = 2147483647;
const MAX_VALUE = 1e9;
const MAX_LATENCY_MS = 86_400_000;

/** 32 random hex digits, as the Python SDK makes event ids (crypto.getRandomValues works on any origin). */
export function eventId() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * An event of `type` for a unit served `arm` of `flag` at `version`, or null
 * when any field is outside what the intake accepts (the whole batch would be
 * refused for it).
 */
export function makeEvent(type, { flag, unit, arm, version, ts = Date.now(), ...extra }) {
  if (typeof flag !== "string" || flag.length > 161 || !FLAG.test(flag)) return null;
  if (typeof unit !== "string" || unit.length < 1 || unit.length > 256) return null;
  if (!ARMS.has(arm)) return null;
  if (!Number.isInteger(version) || version < 0 || version > MAX_VERSION) return null;
  const event = { v: 1, type, id: eventId(), ts, flag, unit, arm, flag_version: version };
  if (type === "request") {
    event.error = Boolean(extra.error);
    const latency = extra.latencyMs;
    if (latency !== undefined && latency !== null) {
      if (!Number.isFinite(latency) || latency < 0) return null;
      event.latency_ms = Math.min(Math.round(latency * 100) / 100, MAX_LATENCY_MS);
    }
  } else if (type === "conversion") {
    if (extra.value !== undefined && extra.value !== null) {
      if (!Number.isFinite(extra.value) || Math.abs(extra.value) > MAX_VALUE) return null;
      event.value = extra.value;
    }
    if (extra.name !== undefined && extra.name !== null) {
      if (typeof extra.name !== "string" || !CONVERSION_NAME.test(extra.name)) return null;
      event.name = extra.name;
    }
  }
  return event;
}

/**
 * How long to wait before sending a batch again: the answer's Retry-After
 * (seconds or an HTTP date) when it has one, else an exponential backoff from
 * `baseMs` with jitter; never more than `maxMs`.
 */
export function retryDelay(retryAfter, attempt, { baseMs = 500, maxMs = 30_000, now = Date.now(), random = Math.random } = {}) {
  if (retryAfter !== null && retryAfter !== undefined && retryAfter !== "") {
    const text = String(retryAfter).trim();
    const seconds = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - now;
    if (Number.isFinite(seconds)) return Math.min(Math.max(seconds, 0), maxMs);
  }
  const backoff = baseMs * 2 ** Math.min(attempt, 16);
  return Math.min(backoff * (0.5 + random() / 2), maxMs);
}

/** Resolves after `ms`; in Node, the wait keeps the process alive only when `hold` (someone awaits it). */
function sleep(ms, hold) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (!hold) timer?.unref?.();
  });
}

/**
 * A bounded queue of events posted to `${baseUrl}/v1/events` in batches of up
 * to `maxBatch`, every `flushIntervalMs` or as soon as a batch is full; one
 * batch in flight at a time. Nothing here throws into the app: a full queue
 * drops its oldest event (counted in `dropped`), a refused batch is counted
 * in `rejected` and reported to `onError`.
 */
export class EventSender {
  constructor({
    baseUrl,
    apiKey,
    headers = {},
    maxBatch = 500,
    maxQueue = 10_000,
    flushIntervalMs = 1000,
    maxRetryDelayMs = 30_000,
    fetch = (url, init) => globalThis.fetch(url, init), // a browser's fetch must not be called as a method
    onError = () => {},
  }) {
    if (!baseUrl) throw new TypeError("baseUrl is required: the controller's HTTP address");
    this.url = `${String(baseUrl).replace(/\/+$/, "")}/v1/events`;
    this.headers = { ...headers, "Content-Type": "application/json" };
    if (apiKey) this.headers.Authorization = `Bearer ${apiKey}`;
    this.maxBatch = Math.max(1, Math.min(maxBatch, 500));
    this.maxQueue = Math.max(this.maxBatch, maxQueue);
    this.flushIntervalMs = flushIntervalMs;
    this.maxRetryDelayMs = maxRetryDelayMs;
    this.fetch = fetch;
    this.onError = onError;
    this.queue = [];
    this.counters = { sent: 0, dropped: 0, rejected: 0, retries: 0 };
    this.timer = null;
    this.pumping = null;
    this.closing = false;
    this.waiting = 0;
  }

  /** Queue one event (as made by makeEvent); the oldest is dropped when the queue is full. */
  add(event) {
    if (this.closing) {
      this.counters.dropped += 1;
      return;
    }
    this.queue.push(event);
    if (this.queue.length > this.maxQueue) {
      this.queue.shift();
      this.counters.dropped += 1;
    }
    if (this.queue.length >= this.maxBatch) this.#pump();
    else this.#schedule();
  }

  /** Events queued and not yet answered by the intake. */
  get pending() {
    return this.queue.length + (this.inFlight ?? 0);
  }

  /** Resolves once the queue is empty and no batch is in flight (each answered or dropped). */
  async flush() {
    this.waiting += 1;
    try {
      while (this.queue.length > 0 || this.pumping) await this.#pump();
    } finally {
      this.waiting -= 1;
    }
  }

  /**
   * Send what is queued, waiting up to `timeoutMs` (a retried batch keeps
   * trying until then); what is still unsent then is counted as dropped.
   * Answers the counters.
   */
  async close({ timeoutMs = 10_000 } = {}) {
    this.closing = true;
    this.deadline = Date.now() + timeoutMs;
    clearTimeout(this.timer);
    this.timer = null;
    await this.flush();
    return { ...this.counters };
  }

  #schedule() {
    if (this.timer !== null || this.pumping) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.#pump();
    }, this.flushIntervalMs);
    this.timer?.unref?.();
  }

  #pump() {
    clearTimeout(this.timer);
    this.timer = null;
    this.pumping ??= this.#drain().finally(() => {
      this.pumping = null;
      if (this.queue.length > 0 && !this.closing) this.#schedule();
    });
    return this.pumping;
  }

  async #drain() {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight = batch.length;
      try {
        await this.#deliver(batch);
      } finally {
        this.inFlight = 0;
      }
    }
  }

  async #deliver(batch) {
    const body = JSON.stringify({ events: batch });
    for (let attempt = 0; ; attempt++) {
      let retryAfter = null;
      try {
        const answer = await this.fetch(this.url, { method: "POST", headers: this.headers, body });
        if (answer.status === 202 || answer.status === 200) {
          this.counters.sent += batch.length;
          return;
        }
        const retryable = answer.status === 429 || answer.status >= 500;
        const reason = await answer.text().catch(() => "");
        if (!retryable) {
          this.counters.rejected += batch.length;
          this.onError(new Error(`the intake refused ${batch.length} events: ${answer.status} ${reason.slice(0, 500)}`));
          return;
        }
        retryAfter = answer.headers.get("Retry-After");
      } catch (error) {
        this.onError(error);
      }
      const wait = retryDelay(retryAfter, attempt, { maxMs: this.maxRetryDelayMs });
      if (this.closing && Date.now() + wait > this.deadline) {
        this.counters.dropped += batch.length + this.queue.length;
        this.queue.length = 0;
        return;
      }
      this.counters.retries += 1;
      await sleep(wait, this.waiting > 0);
    }
  }
}
