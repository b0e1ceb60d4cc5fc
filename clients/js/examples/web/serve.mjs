// Serve the bundled page, and nothing else, on localhost:
//
//   node examples/web/serve.mjs DIST_DIR [PORT]
//
// Prints the page's address on stdout once listening. The page calls the
// controller on its own origin, as a web app does: open it with
// `?controller=CONTROLLER_URL&key=CLIENT_KEY`, with this server's origin
// (`http://127.0.0.1:PORT`) in the controller's `http.cors_origins` and a
// client key (`rolloutctl app-key create NAME --client`).
import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";

const [dist, port = "0"] = process.argv.slice(2);
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };

const server = http.createServer(async (request, response) => {
  const { pathname } = new URL(request.url, "http://page");
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
