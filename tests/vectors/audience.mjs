// A client in another language, written from docs/clients.md ("Audience
// rules") alone: evaluation of an audience rule's JSON form in JavaScript, run
// against every vector of audience.json.
//
//   node tests/vectors/audience.mjs [tests/vectors/audience.json]
//
// Prints one JSON object ({"checked": n, "mismatches": [...]}) and exits 1 on
// any mismatch. tests/unit/test_audience_vectors.py runs it.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const isDigits = (s) => s.length > 0 && /^[0-9]+$/.test(s); // linear: one character class
const isIdentifier = (s) => s.length > 0 && /^[0-9A-Za-z-]+$/.test(s);

// Numeric identifiers compare by length, then as text: no precision limit.
function compareNumeric(a, b) {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function numeric(s) {
  return isDigits(s) && (s === "0" || s[0] !== "0") ? s : null;
}

// A strict semver 2.0.0 version, or null: {core: [3 digit strings], pre: [identifiers]}.
export function semver(text) {
  if (typeof text !== "string" || text.length > 256) return null;
  const plus = text.indexOf("+");
  let core = text;
  if (plus >= 0) {
    if (!text.slice(plus + 1).split(".").every(isIdentifier)) return null;
    core = text.slice(0, plus);
  }
  const dash = core.indexOf("-");
  const pre = dash >= 0 ? core.slice(dash + 1).split(".") : [];
  const numbers = (dash >= 0 ? core.slice(0, dash) : core).split(".").map(numeric);
  if (numbers.length !== 3 || numbers.includes(null)) return null;
  for (const id of pre) {
    if (!isIdentifier(id) || (isDigits(id) && numeric(id) === null)) return null;
  }
  return { core: numbers, pre };
}

function compareSemver(a, b) {
  for (let i = 0; i < 3; i++) {
    const c = compareNumeric(a.core[i], b.core[i]);
    if (c) return c;
  }
  if (!a.pre.length || !b.pre.length) {
    return a.pre.length === b.pre.length ? 0 : a.pre.length ? -1 : 1; // a release is higher
  }
  for (let i = 0; i < Math.min(a.pre.length, b.pre.length); i++) {
    const [x, y] = [a.pre[i], b.pre[i]];
    const c = isDigits(x) && isDigits(y) ? compareNumeric(x, y)
      : isDigits(x) ? -1 : isDigits(y) ? 1 : x < y ? -1 : x > y ? 1 : 0;
    if (c) return c;
  }
  return Math.sign(a.pre.length - b.pre.length);
}

// Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
function daysFromCivil(y, m, d) {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function field(text, start, width, low, high) {
  const piece = text.slice(start, start + width);
  if (piece.length !== width || !isDigits(piece)) return null;
  const value = Number(piece);
  return value >= low && value <= high ? value : null;
}

// An instant as [seconds since the epoch, nanoseconds], or null.
export function instant(text) {
  if (typeof text !== "string" || text.length > 256 || text.length < 10) return null;
  if (text[4] !== "-" || text[7] !== "-") return null;
  const [y, m, d] = [field(text, 0, 4, 1, 9999), field(text, 5, 2, 1, 12), field(text, 8, 2, 1, 31)];
  if (y === null || m === null || d === null) return null;
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  if (d > [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]) return null;
  const days = daysFromCivil(y, m, d);
  if (text.length === 10) return [days * 86400, 0];
  if (text[10] !== "T" || text[13] !== ":" || text[16] !== ":") return null;
  const [h, mi, s] = [field(text, 11, 2, 0, 23), field(text, 14, 2, 0, 59), field(text, 17, 2, 0, 59)];
  if (h === null || mi === null || s === null) return null;
  let rest = text.slice(19);
  let nanos = 0;
  if (rest[0] === ".") {
    let n = 1;
    while (n < rest.length && rest[n] >= "0" && rest[n] <= "9") n++;
    if (n < 2 || n > 10) return null;
    nanos = Number(rest.slice(1, n).padEnd(9, "0"));
    rest = rest.slice(n);
  }
  let offset = 0;
  if (rest !== "" && rest !== "Z") {
    if (rest.length !== 6 || !"+-".includes(rest[0]) || rest[3] !== ":") return null;
    const [oh, om] = [field(rest, 1, 2, 0, 23), field(rest, 4, 2, 0, 59)];
    if (oh === null || om === null) return null;
    offset = (rest[0] === "+" ? 1 : -1) * (oh * 3600 + om * 60);
  }
  return [days * 86400 + h * 3600 + mi * 60 + s - offset, nanos];
}

const compareInstant = (a, b) => Math.sign(a[0] - b[0]) || Math.sign(a[1] - b[1]);
const compareAny = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const ORDER = {
  "==": (c) => c === 0, "!=": (c) => c !== 0, "<": (c) => c < 0,
  "<=": (c) => c <= 0, ">": (c) => c > 0, ">=": (c) => c >= 0,
};

// Numbers: JSON numbers are binary64 already; NaN is unknown; booleans are not numbers.
const number = (v) => (typeof v === "number" && !Number.isNaN(v) ? v : null);
const text = (v) => (typeof v === "string" ? v : null);

function condition(rule, context, segments) {
  const actual = Object.hasOwn(context, rule.attribute) ? context[rule.attribute] : null;
  const { op, value } = rule;
  const inOrNot = (found) => (found === null ? null : found === (op === "in"));
  if (Array.isArray(value)) {
    const read = typeof value[0] === "string" ? text : number;
    const v = read(actual);
    return inOrNot(v === null ? null : value.includes(v));
  }
  if (value !== null && typeof value === "object") {
    if ("segment" in value) {
      // An id list holds the attribute's value; a rule segment ({rule}) is its
      // rule's truth over the whole context, evaluated without segments.
      const held = Object.hasOwn(segments, value.segment) ? segments[value.segment] : null;
      if (held === null || text(actual) === null) return null;
      return inOrNot(Array.isArray(held) ? held.includes(actual) : truth(held.rule, context, {}));
    }
    const [parse, compare, literal] = "semver" in value
      ? [semver, compareSemver, value.semver] : [instant, compareInstant, value.date];
    const mine = parse(actual);
    return mine === null ? null : ORDER[op](compare(mine, parse(literal)));
  }
  if (typeof value === "boolean") return typeof actual === "boolean" ? ORDER[op](compareAny(actual, value)) : null;
  if (typeof value === "number") {
    const v = number(actual);
    return v === null ? null : ORDER[op](compareAny(v, value));
  }
  if (typeof actual !== "string") return null;
  if (op === "starts_with") return actual.startsWith(value);
  if (op === "ends_with") return actual.endsWith(value);
  if (op === "contains") return actual.includes(value);
  return ORDER[op](compareAny(actual, value)); // == and != on code units: same answer as code points
}

// Kleene's three-valued logic: null is unknown; only true matches.
export function truth(rule, context, segments) {
  if ("not" in rule) {
    const t = truth(rule.not, context, segments);
    return t === null ? null : !t;
  }
  if ("and" in rule || "or" in rule) {
    const decisive = !("and" in rule);
    const parts = (rule.and ?? rule.or).map((part) => truth(part, context, segments));
    if (parts.includes(decisive)) return decisive;
    return parts.includes(null) ? null : !decisive;
  }
  return condition(rule, context, segments);
}

// Run as a script (not imported by another client): check every vector of the file.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const path = process.argv[2] ?? new URL("./audience.json", import.meta.url);
  const { segments, vectors } = JSON.parse(readFileSync(path, "utf8"));
  const mismatches = [];
  for (const v of vectors) {
    const got = truth(v.rule, v.context, segments);
    if (got !== v.truth || (got === true) !== v.match) mismatches.push({ vector: v, got });
  }
  console.log(JSON.stringify({ checked: vectors.length, mismatches: mismatches.slice(0, 3) }));
  process.exit(mismatches.length ? 1 : 0);
}
