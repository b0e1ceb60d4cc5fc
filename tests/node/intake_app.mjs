// A Node app that sends events to the controller's HTTP intake with clients/js's
// EventSender (batches, retries after Retry-After), driven over stdin/stdout:
//
//   node tests/node/intake_app.mjs BASE_URL
//
// One JSON command per line, one JSON answer per line:
//   {"cmd": "send", "n": N, "flag": F}  make N events (exposure, request,
//                                       conversion in turn) and queue them
//   {"cmd": "flush"}                    wait until every queued event is answered
//   {"cmd": "seen"}                     the HTTP statuses seen so far ("unreachable": no answer)
//   {"cmd": "close", "timeout_ms": T}   send what is left, then answer the counters,
//                                       the statuses and every event made; exit
// It needs no npm packages: clients/js has no dependencies of its own.
import readline from "node:readline";

import { EventSender, makeEvent } from "../../clients/js/src/index.js";

const [baseUrl] = process.argv.slice(2);
const seen = {};
const count = (what) => {
  seen[what] = (seen[what] ?? 0) + 1;
};
const sender = new EventSender({
  baseUrl,
  maxBatch: 50,
  flushIntervalMs: 50,
  maxRetryDelayMs: 1000,
  fetch: async (url, init) => {
    try {
      const answer = await fetch(url, init);
      count(String(answer.status));
      return answer;
    } catch (error) {
      count("unreachable");
      throw error;
    }
  },
});
const made = [];
const KINDS = ["exposure", "request", "conversion"];

function send(n, flag) {
  for (let i = 0; i < n; i++) {
    const k = made.length;
    const type = KINDS[k % 3];
    const event = makeEvent(type, {
      flag,
      unit: `u${k % 37}`,
      arm: k % 2 ? "treatment" : "control",
      version: 1,
      error: k % 5 === 0,
      latencyMs: k % 300,
      value: k % 7,
    });
    made.push(event);
    sender.add(event);
  }
  return { queued: n };
}

const answer = (body) => process.stdout.write(`${JSON.stringify(body)}\n`);
for await (const line of readline.createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  if (command.cmd === "send") answer(send(command.n, command.flag));
  else if (command.cmd === "flush") answer(await sender.flush().then(() => ({ ...sender.counters })));
  else if (command.cmd === "seen") answer(seen);
  else if (command.cmd === "close") {
    const counters = await sender.close({ timeoutMs: command.timeout_ms });
    answer({ counters, seen, events: made });
    break;
  }
}
