// Follows one flag through OpenFeature's published OFREP providers for Node and
// says what it is served, and every request the provider makes:
//
//   OFREP_JS_HOME=clients/js node tests/node/ofrep_follow.mjs MODE BASE_URL FLAG UNIT INTERVAL_MS
//
// MODE `server`: @openfeature/server-sdk with @openfeature/ofrep-provider, one
// evaluation every INTERVAL_MS (the provider keeps nothing: each is a request).
// MODE `poll`: @openfeature/web-sdk with @openfeature/ofrep-web-provider on
// Node, polling the bulk endpoint every INTERVAL_MS (no localStorage nor
// EventSource here), evaluated from its cache every 20 ms.
//
// Prints JSON lines: {"http": {method, path, status, ifNoneMatch, etag}} for
// each answer the provider got, {"served": {value, variant, reason}, "at": ms}
// whenever what it serves changes, and {"ready": true} once the provider
// started. Runs until killed. The packages come from OFREP_JS_HOME's
// node_modules (`make js-client`).
import { createRequire } from "node:module";
import path from "node:path";

const home = path.resolve(process.env.OFREP_JS_HOME ?? "clients/js");
const require = createRequire(path.join(home, "package.json"));
const [mode, baseUrl, flag, unit, intervalText] = process.argv.slice(2);
const interval = Number(intervalText);
const say = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

// The providers' own fetch, recorded: what each request sent and got.
async function recorded(input, init) {
  const request = new Request(input, init);
  const response = await fetch(request);
  const { pathname, search } = new URL(request.url);
  say({
    http: {
      method: request.method,
      path: pathname + search,
      status: response.status,
      ifNoneMatch: request.headers.get("if-none-match"),
      etag: response.headers.get("etag"),
    },
  });
  return response;
}

let last = "";
function show(details) {
  const served = { value: details.value, variant: details.variant ?? null, reason: details.reason };
  if (JSON.stringify(served) !== last) {
    last = JSON.stringify(served);
    say({ served, at: Date.now() });
  }
}

async function server() {
  const { OpenFeature } = require("@openfeature/server-sdk");
  const { OFREPProvider } = require("@openfeature/ofrep-provider");
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, fetchImplementation: recorded }));
  const client = OpenFeature.getClient();
  say({ ready: true });
  for (;;) {
    show(await client.getBooleanDetails(flag, false, { targetingKey: unit }));
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

async function poll() {
  const { OpenFeature } = require("@openfeature/web-sdk");
  const { OFREPWebProvider } = require("@openfeature/ofrep-web-provider");
  const provider = new OFREPWebProvider({
    baseUrl,
    fetchImplementation: recorded,
    changeDetection: "polling",
    pollInterval: interval,
    cacheMode: "disabled",
  });
  await OpenFeature.setProviderAndWait(provider, { targetingKey: unit });
  const client = OpenFeature.getClient();
  say({ ready: true });
  setInterval(() => show(client.getBooleanDetails(flag, false)), 20);
}

await { server, poll }[mode]();
