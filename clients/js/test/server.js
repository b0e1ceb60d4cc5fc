// A tiny HTTP server for the tests: the controller's intake and OFREP, as far as the package uses them.
import http from "node:http";

/**
 * Start a server on 127.0.0.1 whose `POST /v1/events` answers with
 * `intake(batch, attempt)` (default 202) and whose OFREP bulk and single
 * evaluations answer from `flags` (flag -> (unit) -> OFREP success body).
 */
export async function startServer({ intake = () => ({ status: 202 }), flags = {} } = {}) {
  const batches = [];
  const requests = [];
  const server = http.createServer(async (request, response) => {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : null;
    requests.push({ url: request.url, headers: request.headers, body });
    if (request.url === "/v1/events") {
      const answer = intake(body, batches.length);
      batches.push({ body, status: answer.status, headers: request.headers });
      if (answer.destroy) return request.socket.destroy();
      response.writeHead(answer.status, { "Content-Type": "application/json", ...answer.headers });
      return response.end(JSON.stringify({ reason: "test" }));
    }
    const one = request.url.match(/^\/ofrep\/v1\/evaluate\/flags\/(.+)$/);
    const unit = body?.context?.targetingKey;
    response.setHeader("Content-Type", "application/json");
    if (one) {
      const key = decodeURIComponent(one[1]);
      if (!(key in flags)) return response.writeHead(404).end(JSON.stringify({ key, errorCode: "FLAG_NOT_FOUND" }));
      if (!unit) return response.writeHead(400).end(JSON.stringify({ key, errorCode: "TARGETING_KEY_MISSING" }));
      return response.end(JSON.stringify({ key, ...flags[key](unit) }));
    }
    if (request.url === "/ofrep/v1/evaluate/flags") {
      return response.end(JSON.stringify({ flags: Object.entries(flags).map(([key, f]) => ({ key, ...f(unit) })) }));
    }
    response.writeHead(404).end("{}");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  const events = () => batches.filter((b) => b.status === 202).flatMap((b) => b.body.events);
  return { base, batches, requests, events, close: () => new Promise((r) => server.close(r)) };
}

/** An OFREP success body: the arm as variant and value, the version in metadata. */
export function served(arm, version, reason = "SPLIT") {
  return { value: arm === "treatment", variant: arm, reason, metadata: { flag_version: version, rollout_id: "r-1", stage: 0 } };
}
