// A Node app on OpenFeature's server SDK and OFREP provider, reporting to
// rollout-controller with @rollout-controller/openfeature-hooks:
//
//   node examples/node/app.mjs CONTROLLER_URL FLAG UNITS
//
// Units unit-0 .. unit-(UNITS-1) are evaluated twice each (the hook exposes
// each once), then each serves one measured request (every fifth fails) and
// every fifth unit converts: OpenFeature's client.track("checkout_completed")
// with a value of 4.5, which the wrapped provider sends as a named conversion.
// It prints one JSON line: the arm served to each unit, the flag versions seen
// and the event counters.
import { OFREPProvider } from "@openfeature/ofrep-provider";
import { OpenFeature } from "@openfeature/server-sdk";
import { RolloutEvents } from "@rollout-controller/openfeature-hooks";

const [controller, flag, count] = process.argv.slice(2);
const events = new RolloutEvents({ baseUrl: controller, apiKey: process.env.RC_APP_KEY });
OpenFeature.addHooks(events.hook());
await OpenFeature.setProviderAndWait(events.provider(new OFREPProvider({ baseUrl: controller })));
const client = OpenFeature.getClient();

const units = Array.from({ length: Number(count) }, (_, i) => `unit-${i}`);
const arms = {};
const versions = new Set();
for (let round = 0; round < 2; round++) {
  for (const unit of units) {
    const details = await client.getBooleanDetails(flag, false, { targetingKey: unit });
    arms[unit] = details.variant;
    versions.add(details.flagMetadata.flag_version);
  }
}
for (const [i, unit] of units.entries()) {
  const details = await client.getBooleanDetails(flag, false, { targetingKey: unit });
  await events
    .measure(details, unit, async () => {
      if (i % 5 === 0) throw new Error("the request failed");
    })
    .catch(() => {});
  if (i % 5 === 0) client.track("checkout_completed", { targetingKey: unit }, { value: 4.5 });
}
const counters = await events.close();
await OpenFeature.close();
console.log(JSON.stringify({ arms, versions: [...versions], counters }));
