// Evaluates every flag for many units through OpenFeature's published OFREP
// providers for Node, and says each answer's variant, reason and error code:
//
//   OFREP_JS_HOME=clients/js node tests/node/ofrep_prerequisites.mjs BASE_URL SERVER_UNITS WEB_UNITS FLAG...
//
// `server`: @openfeature/server-sdk with @openfeature/ofrep-provider, which keeps
// nothing: each evaluation is a request, 50 in flight at a time, for units
// server-0 .. server-(SERVER_UNITS-1).
// `web`: @openfeature/web-sdk with @openfeature/ofrep-web-provider on Node (no
// cache, no polling, no event stream): for units web-0 .. web-(WEB_UNITS-1) in
// turn, the context is set (one bulk request), then each flag is evaluated
// from what that request answered.
// Both run at once. Prints one JSON object: for each of `server` and `web`,
// each unit's answers, one [variant, reason, errorCode] per FLAG in order
// (null where there is none). The packages come from OFREP_JS_HOME's
// node_modules (`make js-client`).
import { createRequire } from "node:module";
import path from "node:path";

const home = path.resolve(process.env.OFREP_JS_HOME ?? "clients/js");
const require = createRequire(path.join(home, "package.json"));
const [baseUrl, serverUnitsText, webUnitsText, ...flags] = process.argv.slice(2);
const answer = (details) => [details.variant ?? null, details.reason ?? null, details.errorCode ?? null];
const units = (prefix, count) => Array.from({ length: Number(count) }, (_, i) => `${prefix}-${i}`);

async function server() {
  const { OpenFeature } = require("@openfeature/server-sdk");
  const { OFREPProvider } = require("@openfeature/ofrep-provider");
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl }));
  const client = OpenFeature.getClient();
  const jobs = units("server", serverUnitsText).flatMap((unit) => flags.map((flag) => [unit, flag]));
  const out = {};
  const IN_FLIGHT = 50;
  for (let start = 0; start < jobs.length; start += IN_FLIGHT) {
    await Promise.all(
      jobs.slice(start, start + IN_FLIGHT).map(async ([unit, flag]) => {
        const details = await client.getBooleanDetails(flag, false, { targetingKey: unit });
        (out[unit] ??= {})[flag] = answer(details);
      }),
    );
  }
  await OpenFeature.close();
  return Object.fromEntries(Object.entries(out).map(([unit, got]) => [unit, flags.map((f) => got[f])]));
}

async function web() {
  const { OpenFeature } = require("@openfeature/web-sdk");
  const { OFREPWebProvider } = require("@openfeature/ofrep-web-provider");
  const provider = new OFREPWebProvider({ baseUrl, cacheMode: "disabled", changeDetection: "none" });
  const all = units("web", webUnitsText);
  const out = {};
  if (all.length === 0) return out;
  await OpenFeature.setProviderAndWait(provider, { targetingKey: all[0] });
  const client = OpenFeature.getClient();
  for (const unit of all) {
    await OpenFeature.setContext({ targetingKey: unit });
    out[unit] = flags.map((flag) => answer(client.getBooleanDetails(flag, false)));
  }
  await OpenFeature.close();
  return out;
}

const [serverOut, webOut] = await Promise.all([server(), web()]);
console.log(JSON.stringify({ server: serverOut, web: webOut }));
