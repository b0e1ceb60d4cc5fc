// Evaluates one flag for many evaluation contexts through OpenFeature's OFREP provider for Node.
//
//   OFREP_NODE_HOME=.ofrep-node node tests/node/ofrep_contexts.mjs BASE_URL FLAG CONTEXTS_FILE
//
// CONTEXTS_FILE holds a JSON array of evaluation contexts (each with its
// `targetingKey` and any attributes). Each is resolved as a boolean, at most
// IN_FLIGHT at once, and one JSON object is printed: the values in the file's
// order, the flag versions the answers carried (`flag_version` metadata), and
// the error codes seen. The provider's requests go through its
// `fetchImplementation` option over node:http with a keep-alive agent of
// CONNECTIONS sockets: Node's own fetch costs several times more per request.
// The packages come from OFREP_NODE_HOME (`make ofrep-node`).
import { readFile } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";

const IN_FLIGHT = 32;
const CONNECTIONS = 8;
const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });

/** A fetch for the provider's requests (a Request in, a Response out) over `agent`. */
async function keepAliveFetch(input, init) {
  const request = input instanceof Request && init === undefined ? input : new Request(input, init);
  const body = request.body ? Buffer.from(await request.arrayBuffer()) : undefined;
  return new Promise((resolve, reject) => {
    const sent = http.request(
      request.url,
      { method: request.method, headers: Object.fromEntries(request.headers), agent },
      (answer) => {
        const chunks = [];
        answer.on("data", (chunk) => chunks.push(chunk));
        answer.on("end", () => {
          const headers = new Headers();
          for (const [name, value] of Object.entries(answer.headers)) {
            headers.set(name, Array.isArray(value) ? value.join(", ") : String(value));
          }
          resolve(new Response(Buffer.concat(chunks), { status: answer.statusCode, headers }));
        });
        answer.on("error", reject);
      },
    );
    sent.on("error", reject);
    sent.end(body);
  });
}

const home = path.resolve(process.env.OFREP_NODE_HOME ?? ".ofrep-node");
const require = createRequire(path.join(home, "package.json"));
const { OpenFeature } = require("@openfeature/server-sdk");
const { OFREPProvider } = require("@openfeature/ofrep-provider");

const [baseUrl, flag, contextsFile] = process.argv.slice(2);
const contexts = JSON.parse(await readFile(contextsFile, "utf8"));
await OpenFeature.setProviderAndWait(
  new OFREPProvider({ baseUrl, fetchImplementation: keepAliveFetch }),
);
const client = OpenFeature.getClient();

const values = new Array(contexts.length);
const versions = new Set();
const errors = new Set();
let next = 0;
async function worker() {
  while (next < contexts.length) {
    const i = next++;
    const details = await client.getBooleanDetails(flag, false, contexts[i]);
    values[i] = details.value;
    if (details.errorCode) errors.add(`${details.errorCode}: ${details.errorMessage ?? ""}`);
    versions.add(details.flagMetadata?.flag_version ?? null);
  }
}
await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
await OpenFeature.close();
agent.destroy();
console.log(JSON.stringify({ values, versions: [...versions], errors: [...errors].sort() }));
