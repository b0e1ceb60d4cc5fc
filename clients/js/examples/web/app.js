// A browser app on OpenFeature's web SDK and OFREP web provider, reporting to
// rollout-controller with @rollout-controller/openfeature-hooks.
//
//   index.html?flags=checkout.new-flow,search.v2&faulty=search.v2&units=5000&requests=3
//
// It visits units one after another (each visit: the unit becomes the
// evaluation context, every flag is evaluated, each served arm handles
// `requests` requests, measured). The treatment of a flag named in `faulty` fails 40% of
// its requests, anything else 1%. `controller` (default: this page's origin)
// is where OFREP and the event intake are; `key` its client key (`rolloutctl
// app-key create NAME --client`), sent as `Authorization: Bearer`. A page on
// another origin than the controller's needs that origin in the controller's
// `http.cors_origins`. (A real app bundles its client key; the page takes it
// from its address so that one build serves any controller.)
//
// A provider that cannot start (a refused key or origin) leaves the page
// serving every flag's default; `shop.stats().failed` says why.
import { OFREPWebProvider } from "@openfeature/ofrep-web-provider";
import { OpenFeature } from "@openfeature/web-sdk";
import { RolloutEvents } from "@rollout-controller/openfeature-hooks";

const params = new URLSearchParams(location.search);
const list = (name) => (params.get(name) ?? "").split(",").filter(Boolean);
const controller = params.get("controller") ?? location.origin;
const key = params.get("key") ?? undefined;
const flags = list("flags");
const faulty = new Set(list("faulty"));
const units = Number(params.get("units") ?? 5000);
const requests = Number(params.get("requests") ?? 3);

const shown = { visits: 0, errors: 0, last: {}, failed: null };
const events = new RolloutEvents({ baseUrl: controller, apiKey: key, flushIntervalMs: 200 });
OpenFeature.addHooks(events.hook());
const headers = key ? [["Authorization", `Bearer ${key}`]] : undefined; // the web provider takes a list
try {
  await OpenFeature.setProviderAndWait(new OFREPWebProvider({ baseUrl: controller, headers, pollInterval: 0 }), {
    targetingKey: "unit-0",
  });
} catch (error) {
  const cause = error.cause ?? error;
  shown.failed = {
    error: error.name,
    cause: cause.name,
    status: cause.response?.status ?? null,
    message: String(cause.message).slice(0, 500),
  };
}
const client = OpenFeature.getClient();

const rows = Object.fromEntries(
  flags.map((flag) => {
    const row = document.createElement("li");
    document.querySelector("#flags").append(row);
    return [flag, row];
  }),
);

function handle(flag, arm) {
  const failing = faulty.has(flag) && arm === "treatment" ? 0.4 : 0.01;
  if (Math.random() < failing) throw new Error(`${flag}: the ${arm} failed`);
}

async function visit(unit) {
  await OpenFeature.setContext({ targetingKey: unit });
  for (const flag of flags) {
    const details = client.getBooleanDetails(flag, false);
    shown.last[flag] = { variant: details.variant, reason: details.reason, version: details.flagMetadata?.flag_version };
    rows[flag].textContent = `${flag}: ${details.value ? "new" : "old"} (${details.reason})`;
    for (let i = 0; i < requests; i++) {
      try {
        await events.measure(details, unit, () => handle(flag, details.variant));
      } catch {
        shown.errors += 1;
      }
    }
  }
  shown.visits += 1;
}

let running = true;
const visiting = (async () => {
  for (let i = 0; running; i++) {
    await visit(`unit-${i % units}`);
    if (i % 50 === 0) {
      document.querySelector("#visits").textContent = shown.visits;
      document.querySelector("#errors").textContent = shown.errors;
      await new Promise((resolve) => setTimeout(resolve)); // let the page paint and answer
    }
  }
})();

window.shop = {
  /** What the page served last, per flag, and the event counters. */
  stats: () => ({ ...shown, events: events.counters }),
  /** Stop visiting, send every event left and answer the counters. */
  stop: async () => {
    running = false;
    await visiting;
    return { ...shown, events: await events.close() };
  },
};
