// A verifying client in another language, written from docs/clients.md alone:
// checks the controller's Ed25519 signature on flag states with Node's
// built-in crypto, against every vector of flag-signing.json.
//
//   node tests/vectors/flag-signing.mjs [tests/vectors/flag-signing.json]
//
// Prints one JSON object ({"checked": n, "mismatches": [...]}) and exits 1 on
// any mismatch. tests/unit/test_flag_signing.py runs it.
import { createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";

// Ties to even, as the bucketing threshold rounds (docs/clients.md).
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

// JSON with every object's keys sorted (by UTF-16 code units, as the rules' keys are ASCII).
function canonical(value) {
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  return JSON.stringify(value);
}

// The bytes the controller signs: a compact JSON array, UTF-8; the second form with rings,
// the third with typed arm values.
export function signedBytes(state) {
  const rings = state.rings ?? null;
  const values = state.values ?? null;
  const form = values !== null ? 3 : rings !== null ? 2 : 1;
  const fields = [
    `rollout-controller/flag-state/${form}`,
    state.key_id,
    state.flag,
    state.version,
    state.status,
    roundHalfEven(state.percent * 1000),
    state.salt,
    state.rollout_id ?? null,
    state.stage ?? null,
  ];
  if (form > 1) {
    const ringed = rings === null ? null : rings.map((r) => [r.audience ?? null, r.threshold]);
    fields.push(state.audience ?? null, ringed);
  }
  if (values !== null) fields.push([values.type, values.control, values.treatment]);
  return Buffer.from(canonical(fields), "utf8");
}

// An Ed25519 public key from its 32 raw bytes (base64), as SPKI DER.
function publicKey(base64) {
  const prefix = Buffer.from("302a300506032b6570032100", "hex");
  const der = Buffer.concat([prefix, Buffer.from(base64, "base64")]);
  return createPublicKey({ key: der, format: "der", type: "spki" });
}

export function verified(state, keys) {
  if (typeof state.key_id !== "string" || typeof state.sig !== "string") return false;
  const key = keys.get(state.key_id);
  if (key === undefined) return false;
  const signature = Buffer.from(state.sig, "base64");
  if (signature.length !== 64) return false;
  return verify(null, signedBytes(state), key, signature);
}

const path = process.argv[2] ?? new URL("./flag-signing.json", import.meta.url);
const file = JSON.parse(readFileSync(path, "utf8"));
const keys = new Map(Object.entries(file.keys).map(([id, text]) => [id, publicKey(text)]));
const mismatches = [];
for (const v of file.vectors) {
  const bytes = v.state.key_id ? signedBytes(v.state).toString("utf8") : null;
  const valid = verified(v.state, keys);
  if (valid !== v.valid || bytes !== v.signed) mismatches.push({ name: v.name, valid, bytes });
}
console.log(JSON.stringify({ checked: file.vectors.length, mismatches }));
process.exit(mismatches.length ? 1 : 0);
