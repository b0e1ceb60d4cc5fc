// A targeted rollout's evaluation in another language, written from docs/clients.md
// ("Rings") on top of the bucketing and audience clients beside it: every vector of
// rings.json must come out with its bucket, arm and cohort.
//
//   node tests/vectors/rings.mjs [tests/vectors/rings.json]
//
// Prints one JSON object ({"checked": n, "mismatches": [...]}) and exits 1 on any
// mismatch. tests/unit/test_rings.py runs it.
import { readFileSync } from "node:fs";
import { truth } from "./audience.mjs";
import { assign } from "./bucketing.mjs";

const matches = (rule, context, segments) =>
  rule === null || truth(rule, context, segments) === true;

// The arm and cohort of a unit with `bucket` and `context` under a state's audience and rings.
export function place(audience, rings, bucket, context, segments) {
  if (audience !== null && !matches(audience, context, segments)) {
    return { arm: "control", cohort: "outside" };
  }
  const reached = rings.map((ring) => matches(ring.audience, context, segments));
  const treated = rings.some((ring, i) => reached[i] && bucket < ring.threshold);
  const arm = treated ? "treatment" : "control";
  if (reached.slice(0, -1).some(Boolean)) return { arm, cohort: "carried" };
  return reached[reached.length - 1] ? { arm, cohort: "compared" } : { arm: "control", cohort: "outside" };
}

const path = process.argv[2] ?? new URL("./rings.json", import.meta.url);
const { segments, vectors } = JSON.parse(readFileSync(path, "utf8"));
const mismatches = [];
for (const v of vectors) {
  const { bucket } = assign(v.flag, v.salt, v.unit, 0);
  const got = { bucket, ...place(v.audience, v.rings, bucket, v.context, segments) };
  if (got.bucket !== v.bucket || got.arm !== v.arm || got.cohort !== v.cohort) {
    mismatches.push({ vector: v, got });
  }
}
console.log(JSON.stringify({ checked: vectors.length, mismatches: mismatches.slice(0, 3) }));
process.exit(mismatches.length ? 1 : 0);
