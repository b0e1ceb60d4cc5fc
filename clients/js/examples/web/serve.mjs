// Serve the bundled page on localhost, and forward OFREP and the event intake
// to the controller so that the page calls its own origin:
//
//   node examples/web/serve.mjs DIST_DIR CONTROLLER_URL [PORT]
//
// Prints the page's address on stdout once listening. The forwarding stands
// in for the gateway (or ingress) a web app sits behind; a controller that
// answers the page's origin with CORS needs none: open the page with
// `?controller=CONTROLLER_URL&key=APP_KEY` instead.
import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";

const [dist, controller, port = "0"] = process.argv.slice(2);
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };
const FORWARDED = /^\/(ofrep\/v1\/|v1\/events$)/;
const REQUEST_HEADERS = ["content-type", "if-none-match", "authorization"];
const ANSWER_HEADERS = ["content-type", "etag", "retry-after"];
const MAX_BODY = 2 * 1024 * 1024;

async function forward(request, response) {
  const chunks = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.length;
    if (size > MAX_BODY) return response.writeHead(413).end();
    chunks.push(chunk);
  }
  const headers = Object.fromEntries(REQUEST_HEADERS.filter((h) => request.headers[h]).map((h) => [h, request.headers[h]]));
  const body = request.method === "GET" ? undefined : Buffer.concat(chunks);
  let answer;
  try {
    answer = await fetch(new URL(request.url, controller), { method: request.method, headers, body });
  } catch {
    return response.writeHead(502).end();
  }
  const kept = Object.fromEntries(ANSWER_HEADERS.filter((h) => answer.headers.get(h)).map((h) => [h, answer.headers.get(h)]));
  response.writeHead(answer.status, kept).end(Buffer.from(await answer.arrayBuffer()));
}

const server = http.createServer(async (request, response) => {
  const { pathname } = new URL(request.url, "http://page");
  if (FORWARDED.test(pathname)) return forward(request, response);
  const name = pathname === "/" ? "index.html" : pathname.slice(1);
  if (request.method !== "GET" || !Object.hasOwn(TYPES, path.extname(name)) || name.includes("/")) {
    return response.writeHead(404).end();
  }
  try {
    const file = await readFile(path.join(dist, name));
    response.writeHead(200, { "Content-Type": TYPES[path.extname(name)] }).end(file);
  } catch {
    response.writeHead(404).end();
  }
});
server.listen(Number(port), "127.0.0.1", () => {
  console.log(`http://127.0.0.1:${server.address().port}/`);
});
