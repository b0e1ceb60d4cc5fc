// A client in another language, written from docs/clients.md alone: arm
// assignment in JavaScript, run against every vector of bucketing.json.
//
//   node tests/vectors/bucketing.mjs [tests/vectors/bucketing.json]
//
// Prints one JSON object ({"checked": n, "mismatches": [...]}) and exits 1 on
// any mismatch. tests/unit/test_vectors.py runs it.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const BUCKETS = 100000;

function mix(k) {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}

// MurmurHash3_x86_32 of a byte array, as an unsigned 32-bit integer.
export function murmur3(bytes, seed = 0) {
  let h = seed | 0;
  const whole = bytes.length - (bytes.length % 4);
  for (let i = 0; i < whole; i += 4) {
    h ^= mix(bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  for (let i = bytes.length - 1; i >= whole; i--) k = (k << 8) | bytes[i];
  if (bytes.length > whole) h ^= mix(k);
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0; // unsigned, before the modulo
}

// Ties to even: Math.round would round 0.0005 * 1000 = 0.5 up to 1.
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

const encoder = new TextEncoder();

export function assign(flag, salt, unit, percent) {
  if (!(percent >= 0 && percent <= 100)) throw new RangeError(`percent ${percent}`);
  const hash = murmur3(encoder.encode(`${flag}:${salt}:${unit}`));
  const bucket = hash % BUCKETS;
  const threshold = roundHalfEven(percent * 1000);
  return { hash, bucket, threshold, arm: bucket < threshold ? "treatment" : "control" };
}

// Run as a script (not imported by another client): check every vector of the file.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const path = process.argv[2] ?? new URL("./bucketing.json", import.meta.url);
  const { vectors } = JSON.parse(readFileSync(path, "utf8"));
  const mismatches = [];
  for (const v of vectors) {
    const got = assign(v.flag, v.salt, v.unit, v.percent);
    if (["hash", "bucket", "threshold", "arm"].some((key) => got[key] !== v[key])) {
      mismatches.push({ vector: v, got });
    }
  }
  console.log(JSON.stringify({ checked: vectors.length, mismatches: mismatches.slice(0, 3) }));
  process.exit(mismatches.length ? 1 : 0);
}
