// Exposures, request outcomes and conversions for apps that evaluate flags
// through OpenFeature's OFREP providers (Node: @openfeature/server-sdk with
// @openfeature/ofrep-provider; browsers: @openfeature/web-sdk with
// @openfeature/ofrep-web-provider) against rollout-controller.
//
// A remote evaluation is not an exposure: the app reports the exposure when it
// serves the arm. The hook does that after each evaluation that served an arm
// of a rollout, once per unit, flag and flag version (the controller's OFREP
// answers carry flag_version in their metadata), and remembers the arm so that
// track() can attribute conversions. OFREP has no tracking call, so OpenFeature's
// client.track(name, context, { value }) reaches the controller through
// provider(), which wraps the app's provider and sends each tracking event as a
// conversion named by it. Every event goes to the controller's HTTP intake
// (POST /v1/events) through a bounded, batching, retrying EventSender.
// Where the app traces with OpenTelemetry, the hook also records every
// evaluation on the active span (./traces.js).

import { CONVERSION_NAME, EventSender, makeEvent } from "./events.js";
import { importedOtel, recordEvaluation } from "./traces.js";

export { CONVERSION_NAME, EventSender, eventId, makeEvent, retryDelay } from "./events.js";
export { EVENT, evaluationAttributes, otelImport, recordEvaluation } from "./traces.js";

/** Reasons under which the provider served an arm of a running or completed rollout
 * (STATIC: at 0% or 100%, or completed, where nobody is bucketed). */
const SERVED = new Set(["SPLIT", "TARGETING_MATCH", "STATIC", "CACHED"]);

/** The unit of an evaluation context, or of a plain string. */
function unitOf(context) {
  return typeof context === "string" ? context : context?.targetingKey;
}

/** The arm and flag version an evaluation served, or null when it served no arm of a rollout. */
export function servedArm(details) {
  if (!details || details.errorCode || !SERVED.has(details.reason)) return null;
  const version = details.flagMetadata?.flag_version;
  if (details.variant !== "treatment" && details.variant !== "control") return null;
  if (!Number.isInteger(version)) return null;
  return { flag: details.flagKey, arm: details.variant, version };
}

/**
 * The app's side of a rollout over OFREP.
 *
 *     const events = new RolloutEvents({ baseUrl: "http://controller:8000" });
 *     OpenFeature.addHooks(events.hook());
 *     await OpenFeature.setProviderAndWait(events.provider(new OFREPProvider({ baseUrl })));
 *     const details = await client.getBooleanDetails(flag, false, { targetingKey: unit });
 *     await events.measure(details, unit, () => serve(details.value));
 *     client.track("checkout_completed", { targetingKey: unit }, { value: 42.5 });
 *     await events.close();
 *
 * Options: `baseUrl` (required), `apiKey` (sent as `Authorization: Bearer`),
 * `headers`, `maxBatch`, `maxQueue`, `flushIntervalMs`, `maxRetryDelayMs`,
 * `maxUnits` (units remembered for deduplication and conversions, least
 * recently exposed forgotten first), `onError` and `fetch`. `traces`: whether
 * the hook records each evaluation on the app's active OpenTelemetry span
 * (default true; false where OpenFeature's OpenTelemetry hook does it), through
 * `otel`, @opentelemetry/api's module (default: imported where installed).
 * No method throws into the app; `counters` says what became of every call.
 */
export class RolloutEvents {
  constructor({ maxUnits = 10_000, traces = true, otel, ...options }) {
    this.sender = new EventSender(options);
    this.traces = traces;
    this.otel = otel;
    this.maxUnits = maxUnits;
    this.exposed = new Map();
    this.skipped = { invalid: 0, untracked: 0, unnamed: 0 };
  }

  /**
   * An OpenFeature hook (server or web SDK) that reports the exposure of each
   * evaluation and, once it is done, records it on the app's active span.
   */
  hook() {
    return {
      after: (hookContext, details) => {
        this.expose(details, hookContext?.context);
      },
      finally: (hookContext, details) => {
        if (this.traces) recordEvaluation(this.otel ?? importedOtel(), hookContext, details);
      },
    };
  }

  /**
   * Report that `context`'s unit was served the arm `details` resolved: once
   * per unit, flag and flag version. True when an exposure was queued.
   */
  expose(details, context) {
    try {
      const served = servedArm(details);
      const unit = unitOf(context);
      if (served === null || typeof unit !== "string") return false;
      const flags = this.exposed.get(unit) ?? new Map();
      this.exposed.delete(unit);
      this.exposed.set(unit, flags);
      if (this.exposed.size > this.maxUnits) this.exposed.delete(this.exposed.keys().next().value);
      const seen = flags.get(served.flag);
      flags.set(served.flag, served);
      if (seen && seen.version === served.version && seen.arm === served.arm) return false;
      return this.#queue("exposure", { ...served, unit });
    } catch {
      return false;
    }
  }

  /**
   * An OpenFeature provider that is `provider` (the OFREP provider, say) in
   * everything, and whose `track(name, context, details)` (OpenFeature's
   * `client.track`) also converts the context's unit on every flag it was
   * exposed to: a conversion named `name`, with `details.value`. A name no
   * conversion may carry (`Checkout Completed`; see CONVERSION_NAME) is left
   * out, so the conversion still counts as an unnamed one, and is counted in
   * `unnamed`. The wrapped provider's own `track`, if it has one, is called too.
   */
  provider(provider) {
    const track = (name, context, details) => {
      const named = typeof name === "string" && CONVERSION_NAME.test(name);
      if (!named) this.skipped.unnamed += 1;
      this.track(context, { name: named ? name : undefined, value: details?.value });
      if (typeof provider.track === "function") provider.track(name, context, details);
    };
    return new Proxy(provider, {
      get(target, property) {
        if (property === "track") return track;
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  /**
   * A conversion of `context`'s unit for every flag it was exposed to (or for
   * `flag` only), optionally with a `value` and a `name` (`checkout_completed`:
   * a guardrail may read one name alone; a name CONVERSION_NAME refuses makes
   * the events `invalid`). Answers how many were queued; a unit exposed to
   * nothing is counted in `untracked`.
   */
  track(context, { flag, value, name } = {}) {
    try {
      const unit = unitOf(context);
      let queued = 0;
      for (const served of this.exposed.get(unit)?.values() ?? []) {
        if (flag !== undefined && served.flag !== flag) continue;
        if (this.#queue("conversion", { ...served, unit, value, name })) queued += 1;
      }
      if (queued === 0) this.skipped.untracked += 1;
      return queued;
    } catch {
      this.skipped.untracked += 1;
      return 0;
    }
  }

  /** The outcome of one request served under `details`' arm: whether it failed, and its latency. */
  outcome(details, context, { error = false, latencyMs } = {}) {
    try {
      const served = servedArm(details);
      if (served === null) return false;
      return this.#queue("request", { ...served, unit: unitOf(context), error, latencyMs });
    } catch {
      return false;
    }
  }

  /**
   * Run `step` (sync or async) as a request served under `details`' arm and
   * report its outcome: an error when it throws or rejects (rethrown to the
   * caller, as the step's own), and how long it took. Answers what it answers.
   */
  async measure(details, context, step) {
    const start = globalThis.performance.now();
    try {
      const result = await step();
      this.outcome(details, context, { latencyMs: globalThis.performance.now() - start });
      return result;
    } catch (error) {
      this.outcome(details, context, { error: true, latencyMs: globalThis.performance.now() - start });
      throw error;
    }
  }

  /** Resolves once the queue is empty and no batch is in flight (each answered or dropped). */
  flush() {
    return this.sender.flush();
  }

  /** Send what is queued (waiting up to `timeoutMs`) and stop; answers the counters. */
  async close(options) {
    await this.sender.close(options);
    return this.counters;
  }

  /** sent, dropped, rejected (refused by the intake), retries, invalid, untracked, unnamed, pending. */
  get counters() {
    return { ...this.sender.counters, ...this.skipped, pending: this.sender.pending };
  }

  #queue(type, fields) {
    const event = makeEvent(type, fields);
    if (event === null) {
      this.skipped.invalid += 1;
      return false;
    }
    this.sender.add(event);
    return true;
  }
}
