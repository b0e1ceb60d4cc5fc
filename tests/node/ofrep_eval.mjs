// Evaluates flags through OpenFeature's own OFREP provider for Node, against a controller.
//
//   OFREP_NODE_HOME=.ofrep-node node tests/node/ofrep_eval.mjs BASE_URL UNITS FLAG...
//
// With OFREP_APP_KEY set, every request carries it as `Authorization: Bearer`,
// through the provider's own header option.
//
// For units unit-0 .. unit-(UNITS-1) and each FLAG it resolves a boolean with
// the unit as the targeting key, and prints one JSON object: per flag, the
// variants in unit order, the reasons seen, the metadata of the first unit, and
// the error codes seen. The packages come from OFREP_NODE_HOME (`make ofrep-node`).
import { createRequire } from "node:module";
import path from "node:path";

const home = path.resolve(process.env.OFREP_NODE_HOME ?? ".ofrep-node");
const require = createRequire(path.join(home, "package.json"));
const { OpenFeature } = require("@openfeature/server-sdk");
const { OFREPProvider } = require("@openfeature/ofrep-provider");

const [baseUrl, unitsText, ...flags] = process.argv.slice(2);
const units = Number(unitsText);
const key = process.env.OFREP_APP_KEY;
const headers = key ? [["Authorization", `Bearer ${key}`]] : [];
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers }));
const client = OpenFeature.getClient();

const out = {};
for (const flag of flags) {
  const variants = new Array(units);
  const reasons = new Set();
  const errors = new Set();
  let metadata = null;
  const BATCH = 50;
  for (let start = 0; start < units; start += BATCH) {
    const batch = [];
    for (let i = start; i < Math.min(units, start + BATCH); i++) {
      batch.push(
        client.getBooleanDetails(flag, false, { targetingKey: `unit-${i}` }).then((details) => {
          variants[i] = details.variant ?? null;
          reasons.add(details.reason);
          if (details.errorCode) errors.add(details.errorCode);
          if (i === 0) metadata = details.flagMetadata;
        }),
      );
    }
    await Promise.all(batch);
  }
  out[flag] = { variants, reasons: [...reasons].sort(), errors: [...errors].sort(), metadata };
}
// No targeting key at all: the provider must say so with OFREP's error code.
const missing = await client.getBooleanDetails(flags[0], false, {});
out["<no targeting key>"] = { errors: [missing.errorCode], value: missing.value };
// Flags that bucket nobody (OFREP_KEYLESS_FLAGS, comma-separated) answer without a key.
const keyless = {};
for (const flag of (process.env.OFREP_KEYLESS_FLAGS ?? "").split(",").filter(Boolean)) {
  const details = await client.getBooleanDetails(flag, true, {});
  keyless[flag] = { reason: details.reason, error: details.errorCode ?? null, value: details.value };
}
out["<no targeting key, each flag>"] = keyless;
await OpenFeature.close();
console.log(JSON.stringify(out));
