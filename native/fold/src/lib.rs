//! The events stream's plain records decoded and folded into rollout-controller's cells.
//!
//! `Folder.fold` reads a span of record values, each one JSON object of one event
//! type, and adds them to the partition delta's cells (`CellDelta`, `NamedDelta`) and
//! its set of event ids, exactly as the Python decoder (msgspec) and fold
//! (`controller.core.stats.folding.fold`) would: the same counters, the float sums
//! continued in event order from the cells' current values (so the same to the last
//! bit), the same histogram buckets and unit buckets, each unit's requests and errors,
//! each crash's and exception's failure (name, example, unit bucket) and each failed
//! request's (name, unit bucket) in event order.
//! It answers only for a span it reads exactly as msgspec does, every value the plain
//! case: one flat object of exactly the known keys of one event type, each once; strings
//! without escapes or control characters; integers and floats of strict JSON grammar
//! within their bounds (floats of at most 15 significant digits, which parse to the same
//! double here and in msgspec); ids new to the delta and to the span. For anything else
//! it answers `False` having changed nothing, and the caller's Python path decodes and
//! folds the span. Every number, literal and bound it checks against is handed in by the
//! caller (read from the Python decoder and fold at import), none is written here.

use std::collections::{HashMap, HashSet};

mod lanes;
mod watch;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PySet, PyString, PyTuple};

// The span's maps hash what an app sent (ids, units, flags): aHash, keyed at random when the
// process starts, so that no one can choose keys that collide and turn a span's fold
// quadratic (std's SipHash, keyed the same way, cost the fold about 7% more per event).
type Map<K, V> = HashMap<K, V, ahash::RandomState>;
type Set<K> = HashSet<K, ahash::RandomState>;

/// Not folded here: the caller's Python path answers.
struct Bail;

/// zlib's CRC-32 (IEEE 802.3, reflected), one table lookup per byte: units are short.
const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

// ------------------------------------------------------------------ parsing

/// A number as written: strict JSON grammar, its significant digits counted.
#[derive(Clone, Copy)]
struct Num<'a> {
    text: &'a str,
    integral: bool,
    negative: bool,
    significant: usize,
}

#[derive(Clone, Copy)]
enum Val<'a> {
    Str(&'a str),
    Num(Num<'a>),
    True,
    False,
    Null,
}

/// Every key an event may hold; a key's place here is its bit in a mask.
const KEY_COUNT: usize = 15;
const KEYS: [&[u8]; KEY_COUNT] = [
    b"type",
    b"v",
    b"id",
    b"ts",
    b"flag",
    b"unit",
    b"arm",
    b"flag_version",
    b"error",
    b"latency_ms",
    b"name",
    b"value",
    b"cohort",
    b"failure",
    b"example",
];
const K_TYPE: usize = 0;
const K_V: usize = 1;
const K_ID: usize = 2;
const K_TS: usize = 3;
const K_FLAG: usize = 4;
const K_UNIT: usize = 5;
const K_ARM: usize = 6;
const K_VERSION: usize = 7;
const K_ERROR: usize = 8;
const K_LATENCY: usize = 9;
const K_NAME: usize = 10;
const K_VALUE: usize = 11;
const K_COHORT: usize = 12;
const K_FAILURE: usize = 13;
const K_EXAMPLE: usize = 14;
const COMMON: u16 = 0xff; // type .. flag_version
const fn bit(key: usize) -> u16 {
    1 << key
}

/// The event types, in the order the caller names their tags.
const EXPOSURE: usize = 0;
const REQUEST: usize = 1;
const CONVERSION: usize = 2;
const CRASH: usize = 3;
const EXCEPTION: usize = 4;
/// Per type: the keys it may hold and the keys it must.
const ALLOWED: [u16; 5] = [
    COMMON | bit(K_COHORT),
    COMMON | bit(K_ERROR) | bit(K_LATENCY) | bit(K_COHORT) | bit(K_FAILURE),
    COMMON | bit(K_NAME) | bit(K_VALUE) | bit(K_COHORT),
    COMMON | bit(K_COHORT) | bit(K_FAILURE) | bit(K_EXAMPLE),
    COMMON | bit(K_COHORT) | bit(K_FAILURE) | bit(K_EXAMPLE),
];
const REQUIRED: [u16; 5] = [COMMON, COMMON | bit(K_ERROR), COMMON, COMMON, COMMON];

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), Bail> {
        if self.b.get(self.i) == Some(&byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// A string without escapes or control characters, valid UTF-8.
    fn string(&mut self) -> Result<&'a str, Bail> {
        self.eat(b'"')?;
        let start = self.i;
        let mut ascii = true;
        // Eight bytes at a time while none is a quote, a backslash, a control character
        // or past ASCII; then byte by byte.
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().map_err(|_| Bail)?);
            let quote = w ^ (ONES * u64::from(b'"'));
            let slash = w ^ (ONES * u64::from(b'\\'));
            let stop = (quote.wrapping_sub(ONES) & !quote)
                | (slash.wrapping_sub(ONES) & !slash)
                | w.wrapping_sub(ONES * 0x20)
                | w;
            if stop & HIGH != 0 {
                break;
            }
            self.i += 8;
        }
        loop {
            let byte = *self.b.get(self.i).ok_or(Bail)?;
            if byte == b'"' {
                break;
            }
            if byte == b'\\' || byte < 0x20 {
                return Err(Bail);
            }
            ascii &= byte < 0x80;
            self.i += 1;
        }
        let raw = &self.b[start..self.i];
        let text = if ascii {
            // SAFETY: every byte of `raw` was checked below 0x80 (the eight-byte steps
            // only pass chunks without a high bit), so it is ASCII, hence UTF-8.
            unsafe { std::str::from_utf8_unchecked(raw) }
        } else {
            std::str::from_utf8(raw).map_err(|_| Bail)?
        };
        self.i += 1;
        Ok(text)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, an exponent of at most 3 digits.
    fn number(&mut self) -> Result<Num<'a>, Bail> {
        let start = self.i;
        let negative = self.b.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        let int_start = self.i;
        let int_digits = self.digits();
        if int_digits == 0 || (int_digits > 1 && self.b[int_start] == b'0') {
            return Err(Bail);
        }
        let mut integral = true;
        let mut mantissa_end = self.i;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Bail);
            }
            integral = false;
            mantissa_end = self.i;
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            let exp_digits = self.digits();
            if exp_digits == 0 || exp_digits > 3 {
                return Err(Bail);
            }
            integral = false;
        }
        let significant = self.b[int_start..mantissa_end]
            .iter()
            .filter(|b| b.is_ascii_digit())
            .skip_while(|&&b| b == b'0')
            .count();
        // The slice is ASCII: digits, signs, a point and an exponent mark.
        let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| Bail)?;
        Ok(Num {
            text,
            integral,
            negative,
            significant,
        })
    }

    fn literal(&mut self, word: &[u8], val: Val<'a>) -> Result<Val<'a>, Bail> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(val)
        } else {
            Err(Bail)
        }
    }

    /// A scalar value: anything nested is left to the Python path.
    fn value(&mut self) -> Result<Val<'a>, Bail> {
        match *self.b.get(self.i).ok_or(Bail)? {
            b'"' => Ok(Val::Str(self.string()?)),
            b'-' | b'0'..=b'9' => Ok(Val::Num(self.number()?)),
            b't' => self.literal(b"true", Val::True),
            b'f' => self.literal(b"false", Val::False),
            b'n' => self.literal(b"null", Val::Null),
            _ => Err(Bail),
        }
    }

    /// One object of known keys, each once, and nothing after it but whitespace.
    fn object(&mut self) -> Result<(u16, [Val<'a>; KEY_COUNT]), Bail> {
        let mut vals = [Val::Null; KEY_COUNT];
        let mut seen = 0u16;
        self.ws();
        self.eat(b'{')?;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            return Err(Bail);
        }
        loop {
            let key = self.string()?;
            let k = KEYS
                .iter()
                .position(|known| *known == key.as_bytes())
                .ok_or(Bail)?;
            if seen & bit(k) != 0 {
                return Err(Bail);
            }
            seen |= bit(k);
            self.ws();
            self.eat(b':')?;
            self.ws();
            vals[k] = self.value()?;
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(Bail),
            }
        }
        self.ws();
        if self.i != self.b.len() {
            return Err(Bail);
        }
        Ok((seen, vals))
    }
}

fn chars_within(text: &str, most: usize) -> Result<&str, Bail> {
    chars_between(text, 1, most)
}

/// `text` when it holds `least..=most` code points.
#[inline]
fn chars_between(text: &str, least: usize, most: usize) -> Result<&str, Bail> {
    // Code points: every byte that does not continue a UTF-8 sequence.
    let count = text.bytes().filter(|&b| (b & 0xC0) != 0x80).count();
    if count >= least && count <= most {
        Ok(text)
    } else {
        Err(Bail)
    }
}

/// An optional string field (null: absent) of `least..=most` code points.
fn optional_chars(val: Val<'_>, least: usize, most: usize) -> Result<Option<&str>, Bail> {
    match val {
        Val::Null => Ok(None),
        val => chars_between(text(val)?, least, most).map(Some),
    }
}

fn text(val: Val<'_>) -> Result<&str, Bail> {
    match val {
        Val::Str(text) => Ok(text),
        _ => Err(Bail),
    }
}

/// A non-negative JSON integer at most `most`.
fn whole(val: Val<'_>, most: u64) -> Result<u64, Bail> {
    match val {
        Val::Num(n) if n.integral && !n.negative && n.text.len() <= 18 => {
            let x: u64 = n.text.parse().map_err(|_| Bail)?;
            if x <= most {
                Ok(x)
            } else {
                Err(Bail)
            }
        }
        _ => Err(Bail),
    }
}

/// A float field: a JSON integer as msgspec converts it (`-0` is 0.0), a decimal of at
/// most 15 significant digits correctly rounded, finite, normal or zero, within bounds.
fn float(val: Val<'_>, bounds: (f64, f64)) -> Result<Option<f64>, Bail> {
    let n = match val {
        Val::Null => return Ok(None),
        Val::Num(n) => n,
        _ => return Err(Bail),
    };
    if n.significant > 15 {
        return Err(Bail);
    }
    let x = if n.integral {
        n.text.parse::<i64>().map_err(|_| Bail)? as f64
    } else {
        n.text.parse::<f64>().map_err(|_| Bail)?
    };
    if !x.is_finite() || (x != 0.0 && x.abs() < f64::MIN_POSITIVE) {
        return Err(Bail);
    }
    if x >= bounds.0 && x <= bounds.1 {
        Ok(Some(x))
    } else {
        Err(Bail)
    }
}

/// The literal `val` names among `choices`, by its index.
fn one_of(val: Val<'_>, choices: &[String]) -> Result<usize, Bail> {
    let text = text(val)?;
    choices.iter().position(|c| c == text).ok_or(Bail)
}

/// A cell's key, (flag, version, arm or cohort), and its events' places in the span.
type CellEvents<'a> = (&'a str, i64, &'a str, Vec<usize>);

/// One event as the fold reads it.
struct Event<'a> {
    kind: usize,
    id: &'a str,
    flag: &'a str,
    unit: &'a str,
    version: i64,
    /// The cell's third part: the arm, or the cohort when it is not the compared one.
    label: &'a str,
    error: bool,
    latency: Option<f64>,
    name: Option<&'a str>,
    value: Option<f64>,
    /// A crash's, an exception's or a request's failure: its place in the span's failures,
    /// or `NO_FAILURE`. The name and example are kept apart, so that every event stays as
    /// small as before they were read (one that is read and copied per value).
    failure: u32,
}

/// A failure's name and its example message, as an event gave them.
type Failure<'a> = (&'a str, Option<&'a str>);
const NO_FAILURE: u32 = u32::MAX;

// ------------------------------------------------------------------ folding

/// One cell's increments and its new totals, planned before anything is written.
struct Plan<'py, 'a> {
    key: Bound<'py, PyTuple>,
    cell: Option<Bound<'py, PyAny>>,
    ints: [i64; 7],
    floats: [f64; 3],
    hist: Vec<(usize, i64)>,
    counts: Vec<(i64, i64)>,
    sums: Vec<(i64, f64)>,
    named: Vec<Named<'py, 'a>>,
    units: Vec<&'a str>,
    /// Each unit's requests and errors in the span, by its place in `units`.
    unit_counts: Vec<[i64; 2]>,
    /// The places in `units` of the units with requests, by each one's first request: the
    /// order the Python fold adds them to the cell's `unit_requests`.
    requested: Vec<u32>,
    /// Likewise of the units with errors, by each one's first error (`unit_errors`).
    failed: Vec<u32>,
    /// Each crash or exception that names its failure, in the order of its events: the
    /// name, the example and the unit's bucket (the cell's list `failed`).
    failures: Vec<(&'a str, Option<&'a str>, i64)>,
    /// Each failed request that names its failure, in the order of its events: the name
    /// and the unit's bucket (the cell's list `failed_requests`).
    failed_requests: Vec<(&'a str, i64)>,
}

struct Named<'py, 'a> {
    name: &'a str,
    delta: Option<Bound<'py, PyAny>>,
    ints: [i64; 2],
    floats: [f64; 2],
}

const INT_FIELDS: [&str; 7] = ["exp", "req", "err", "lat_n", "conv", "cv_n", "failures"];
const FLOAT_FIELDS: [&str; 3] = ["lat_sum", "cv_sum", "cv_sq"];
const EXP: usize = 0;
const REQ: usize = 1;
const ERR: usize = 2;
const LAT_N: usize = 3;
const CONV: usize = 4;
const CV_N: usize = 5;
const FAILURES: usize = 6;
const LAT_SUM: usize = 0;
const CV_SUM: usize = 1;
const CV_SQ: usize = 2;

/// A float attribute or entry as Python holds it: only a float is read here.
fn exact_float(value: &Bound<'_, PyAny>) -> Result<f64, Bail> {
    if value.is_exact_instance_of::<PyFloat>() {
        value.extract::<f64>().map_err(|_| Bail)
    } else {
        Err(Bail)
    }
}

fn attr<'py>(obj: &Bound<'py, PyAny>, name: &str) -> Result<Bound<'py, PyAny>, Bail> {
    obj.getattr(name).map_err(|_| Bail)
}

fn attr_dict<'py>(obj: &Bound<'py, PyAny>, name: &str) -> Result<Bound<'py, PyDict>, Bail> {
    let value = attr(obj, name)?;
    if !value.is_exact_instance_of::<PyDict>() {
        return Err(Bail);
    }
    value.cast_into::<PyDict>().map_err(|_| Bail)
}

/// The unit buckets' layout and the bounds of every field, handed in by the caller.
#[pyclass(frozen, module = "rollout_fold_native")]
struct Folder {
    max_bytes: usize,
    /// id, unit and flag: most code points.
    id_chars: usize,
    unit_chars: usize,
    flag_chars: usize,
    /// A failure's name (at least one) and its example (none allowed): most code points.
    failure_chars: usize,
    example_chars: usize,
    max_ts: u64,
    max_version: u64,
    latency: (f64, f64),
    value: (f64, f64),
    tags: Vec<String>,
    arms: Vec<String>,
    cohorts: Vec<String>,
    compared: String,
    /// unit_buckets, kind_count, then the slots of exposures, requests, errors,
    /// conversions, valued conversions, crashes, exceptions, the value sum, the first
    /// latency bin, and the fine histogram buckets per latency bin.
    layout: [i64; 12],
    edges: Vec<f64>,
    cell_type: Py<PyAny>,
    named_type: Py<PyAny>,
    name_ok: Py<PyAny>,
}

impl Folder {
    /// One value as its event; a failure it names pushed to `failures`.
    fn parse<'a>(&self, raw: &'a [u8], failures: &mut Vec<Failure<'a>>) -> Result<Event<'a>, Bail> {
        if raw.is_empty() || raw.len() > self.max_bytes {
            return Err(Bail);
        }
        let (seen, v) = Parser { b: raw, i: 0 }.object()?;
        let kind = one_of(v[K_TYPE], &self.tags)?;
        if seen & !ALLOWED[kind] != 0 || seen & REQUIRED[kind] != REQUIRED[kind] {
            return Err(Bail);
        }
        match v[K_V] {
            Val::Num(n) if n.text == "1" => {}
            _ => return Err(Bail),
        }
        whole(v[K_TS], self.max_ts)?;
        one_of(v[K_ARM], &self.arms)?;
        let cohort = match v[K_COHORT] {
            Val::Null => None,
            val => Some(one_of(val, &self.cohorts)?),
        };
        // The input's own text, equal to the literal it was matched against.
        let label = match cohort {
            Some(c) if self.cohorts[c] != self.compared => text(v[K_COHORT])?,
            _ => text(v[K_ARM])?,
        };
        let mut event = Event {
            kind,
            id: chars_within(text(v[K_ID])?, self.id_chars)?,
            flag: chars_within(text(v[K_FLAG])?, self.flag_chars)?,
            unit: chars_within(text(v[K_UNIT])?, self.unit_chars)?,
            version: whole(v[K_VERSION], self.max_version)? as i64,
            label,
            error: false,
            latency: None,
            name: None,
            value: None,
            failure: NO_FAILURE,
        };
        if kind == REQUEST {
            event.error = match v[K_ERROR] {
                Val::True => true,
                Val::False => false,
                _ => return Err(Bail),
            };
            event.latency = float(v[K_LATENCY], self.latency)?;
            // Checked on every request, read (by the plan) only on one that failed.
            if let Some(failure) = optional_chars(v[K_FAILURE], 1, self.failure_chars)? {
                event.failure = u32::try_from(failures.len()).map_err(|_| Bail)?;
                failures.push((failure, None));
            }
        } else if kind == CONVERSION {
            event.name = match v[K_NAME] {
                Val::Null => None,
                val => Some(text(val)?),
            };
            event.value = float(v[K_VALUE], self.value)?;
        } else if kind == CRASH || kind == EXCEPTION {
            let failure = optional_chars(v[K_FAILURE], 1, self.failure_chars)?;
            let example = optional_chars(v[K_EXAMPLE], 0, self.example_chars)?;
            if let Some(failure) = failure {
                event.failure = u32::try_from(failures.len()).map_err(|_| Bail)?;
                failures.push((failure, example));
            }
        }
        Ok(event)
    }

    /// One cell's plan: its current totals read (nothing written), its events added.
    fn plan<'py, 'a>(
        &self,
        key: Bound<'py, PyTuple>,
        cell: Option<Bound<'py, PyAny>>,
        events: &[usize],
        parsed: &[Event<'a>],
        named_failures: &[Failure<'a>],
    ) -> Result<Plan<'py, 'a>, Bail> {
        let py = key.py();
        let mut ints = [0i64; 7];
        let mut floats = [0.0f64; 3];
        let (mut sums_dict, mut named_dict) = (None, None);
        if let Some(cell) = &cell {
            if !cell.get_type().is(self.cell_type.bind(py)) {
                return Err(Bail);
            }
            for (i, name) in INT_FIELDS.iter().enumerate() {
                ints[i] = attr(cell, name)?.extract::<i64>().map_err(|_| Bail)?;
            }
            for (i, name) in FLOAT_FIELDS.iter().enumerate() {
                floats[i] = exact_float(&attr(cell, name)?)?;
            }
            for name in ["hist", "counts", "unit_requests", "unit_errors"] {
                attr_dict(cell, name)?;
            }
            if !attr(cell, "units")?.is_exact_instance_of::<PySet>()
                || !attr(cell, "failed")?.is_exact_instance_of::<PyList>()
                || !attr(cell, "failed_requests")?.is_exact_instance_of::<PyList>()
            {
                return Err(Bail);
            }
            sums_dict = Some(attr_dict(cell, "sums")?);
            named_dict = Some(attr_dict(cell, "named")?);
        }
        let [buckets, width, exposures, requests, errors, conversions, values, crashes, exceptions, value_sum, latency, fine] =
            self.layout;
        let latency_at = latency * fine;
        // Each increment's place in its list (plus one; zero: none yet), by bin or slot.
        let mut hist: Vec<(usize, i64)> = Vec::new();
        let mut hist_at = vec![0usize; self.edges.len() + 1];
        let mut counts: Vec<(i64, i64)> = Vec::new();
        let mut counts_at = vec![0usize; (buckets * width) as usize];
        let mut count = |slot: i64| {
            let at = &mut counts_at[slot as usize];
            if *at == 0 {
                counts.push((slot, 0));
                *at = counts.len();
            }
            counts[*at - 1].1 += 1;
        };
        let mut sums: Vec<(i64, f64)> = Vec::new();
        let mut named: Vec<Named<'py, 'a>> = Vec::new();
        // At most one unit per event: sized once, never grown.
        let mut units: Vec<&'a str> = Vec::with_capacity(events.len());
        let mut unit_counts: Vec<[i64; 2]> = Vec::with_capacity(events.len());
        let mut requested: Vec<u32> = Vec::with_capacity(events.len());
        let mut failed: Vec<u32> = Vec::new();
        let mut failures: Vec<(&'a str, Option<&'a str>, i64)> = Vec::new();
        let mut failed_requests: Vec<(&'a str, i64)> = Vec::new();
        let mut distinct: Map<&'a str, u32> =
            Map::with_capacity_and_hasher(events.len(), Default::default());
        for &index in events {
            let event = &parsed[index];
            let place = *distinct.entry(event.unit).or_insert_with(|| {
                units.push(event.unit);
                unit_counts.push([0; 2]);
                (units.len() - 1) as u32
            });
            let base = i64::from(crc32(event.unit.as_bytes())) % buckets * width;
            match event.kind {
                REQUEST => {
                    ints[REQ] += 1;
                    count(base + requests);
                    let own = &mut unit_counts[place as usize];
                    if own[0] == 0 {
                        requested.push(place);
                    }
                    own[0] += 1;
                    if event.error {
                        ints[ERR] += 1;
                        count(base + errors);
                        if own[1] == 0 {
                            failed.push(place);
                        }
                        own[1] += 1;
                        if event.failure != NO_FAILURE {
                            let (failure, _) = named_failures[event.failure as usize];
                            failed_requests.push((failure, base / width));
                        }
                    }
                    if let Some(x) = event.latency {
                        ints[LAT_N] += 1;
                        floats[LAT_SUM] += x;
                        let bin = self.edges.partition_point(|edge| *edge <= x);
                        if hist_at[bin] == 0 {
                            hist.push((bin, 0));
                            hist_at[bin] = hist.len();
                        }
                        hist[hist_at[bin] - 1].1 += 1;
                        count(base + (bin as i64 + latency_at) / fine);
                    }
                }
                EXPOSURE => {
                    ints[EXP] += 1;
                    count(base + exposures);
                }
                CONVERSION => {
                    ints[CONV] += 1;
                    count(base + conversions);
                    if let Some(x) = event.value {
                        ints[CV_N] += 1;
                        floats[CV_SUM] += x;
                        floats[CV_SQ] += x * x;
                        count(base + values);
                        let slot = base + value_sum;
                        match sums.iter_mut().find(|(s, _)| *s == slot) {
                            Some(entry) => entry.1 += x,
                            None => {
                                let start = match &sums_dict {
                                    Some(dict) => match dict.get_item(slot).map_err(|_| Bail)? {
                                        Some(found) => exact_float(&found)?,
                                        None => 0.0,
                                    },
                                    None => 0.0,
                                };
                                sums.push((slot, start + x));
                            }
                        }
                    }
                    if let Some(name) = event.name {
                        let at = match named.iter().position(|n| n.name == name) {
                            Some(at) => at,
                            None => {
                                named.push(self.named_start(py, name, named_dict.as_ref())?);
                                named.len() - 1
                            }
                        };
                        let entry = &mut named[at];
                        entry.ints[0] += 1;
                        if let Some(x) = event.value {
                            entry.ints[1] += 1;
                            entry.floats[0] += x;
                            entry.floats[1] += x * x;
                        }
                    }
                }
                kind => {
                    ints[FAILURES] += 1;
                    count(base + exceptions);
                    if kind == CRASH {
                        count(base + crashes);
                    }
                    if event.failure != NO_FAILURE {
                        let (failure, example) = named_failures[event.failure as usize];
                        failures.push((failure, example, base / width));
                    }
                }
            }
        }
        Ok(Plan {
            key,
            cell,
            ints,
            floats,
            hist,
            counts,
            sums,
            named,
            units,
            unit_counts,
            requested,
            failed,
            failures,
            failed_requests,
        })
    }

    /// A named conversion's current totals in the cell, or zeros for a new name.
    fn named_start<'py, 'a>(
        &self,
        py: Python<'py>,
        name: &'a str,
        named: Option<&Bound<'py, PyDict>>,
    ) -> Result<Named<'py, 'a>, Bail> {
        let mut out = Named {
            name,
            delta: None,
            ints: [0; 2],
            floats: [0.0; 2],
        };
        let Some(found) = named
            .map(|dict| dict.get_item(name))
            .transpose()
            .map_err(|_| Bail)?
            .flatten()
        else {
            return Ok(out);
        };
        if !found.get_type().is(self.named_type.bind(py)) {
            return Err(Bail);
        }
        for (i, field) in ["conv", "cv_n"].iter().enumerate() {
            out.ints[i] = attr(&found, field)?.extract::<i64>().map_err(|_| Bail)?;
        }
        for (i, field) in ["cv_sum", "cv_sq"].iter().enumerate() {
            out.floats[i] = exact_float(&attr(&found, field)?)?;
        }
        out.delta = Some(found);
        Ok(out)
    }

    /// Everything read and checked, nothing written; `Err(Bail)` for a span left to Python.
    fn prepare<'py, 'a>(
        &self,
        parsed: &[Event<'a>],
        failures: &[Failure<'a>],
        into: &Bound<'py, PyDict>,
        ids: &Bound<'py, PySet>,
        flag_ok: &Bound<'py, PyAny>,
    ) -> Result<(Vec<Bound<'py, PyString>>, Vec<Plan<'py, 'a>>), Bail> {
        let py = into.py();
        // Cells in the order their first event comes, each with its events.
        let mut cells: Vec<CellEvents<'a>> = Vec::new();
        let mut cell_at: Map<(&'a str, i64, &'a str), usize> = Map::default();
        let mut flags: Set<&'a str> = Set::default();
        let mut names: Set<&'a str> = Set::default();
        let mut span_ids: Set<&'a str> =
            Set::with_capacity_and_hasher(parsed.len(), Default::default());
        let mut new_ids = Vec::with_capacity(parsed.len());
        for (index, event) in parsed.iter().enumerate() {
            let key = (event.flag, event.version, event.label);
            let at = *cell_at.entry(key).or_insert_with(|| {
                cells.push((key.0, key.1, key.2, Vec::new()));
                cells.len() - 1
            });
            cells[at].3.push(index);
            if flags.insert(event.flag) && !call_ok(flag_ok, event.flag)? {
                return Err(Bail);
            }
            if let Some(name) = event.name {
                if names.insert(name) && !call_ok(self.name_ok.bind(py), name)? {
                    return Err(Bail);
                }
            }
            if !span_ids.insert(event.id) {
                return Err(Bail);
            }
            let id = PyString::new(py, event.id);
            if ids.contains(&id).map_err(|_| Bail)? {
                return Err(Bail);
            }
            new_ids.push(id);
        }
        let mut plans = Vec::with_capacity(cells.len());
        for (flag, version, label, events) in &cells {
            let key = PyTuple::new(
                py,
                [
                    PyString::new(py, flag).into_any(),
                    version.into_pyobject(py).map_err(|_| Bail)?.into_any(),
                    PyString::new(py, label).into_any(),
                ],
            )
            .map_err(|_| Bail)?;
            let cell = into.get_item(&key).map_err(|_| Bail)?;
            plans.push(self.plan(key, cell, events, parsed, failures)?);
        }
        Ok((new_ids, plans))
    }
}

fn call_ok(check: &Bound<'_, PyAny>, text: &str) -> Result<bool, Bail> {
    let answer = check.call1((text,)).map_err(|_| Bail)?;
    answer.is_truthy().map_err(|_| Bail)
}

fn add_counts<K: IntoPyObjectCopy>(
    dict: &Bound<'_, PyDict>,
    increments: &[(K, i64)],
) -> PyResult<()> {
    for (key, n) in increments {
        let key = key.object(dict.py())?;
        let before = match dict.get_item(&key)? {
            Some(found) => found.extract::<i64>()?,
            None => 0,
        };
        dict.set_item(key, before + n)?;
    }
    Ok(())
}

/// A dictionary key the plan holds as a Rust integer.
trait IntoPyObjectCopy {
    fn object<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
}

impl IntoPyObjectCopy for usize {
    fn object<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.into_pyobject(py)?.into_any())
    }
}

impl IntoPyObjectCopy for i64 {
    fn object<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.into_pyobject(py)?.into_any())
    }
}

fn write(plan: &Plan<'_, '_>, into: &Bound<'_, PyDict>, folder: &Folder) -> PyResult<()> {
    let py = into.py();
    let cell = match &plan.cell {
        Some(cell) => cell.clone(),
        None => {
            let cell = folder.cell_type.bind(py).call0()?;
            into.set_item(&plan.key, &cell)?;
            cell
        }
    };
    for (name, value) in INT_FIELDS.iter().zip(plan.ints) {
        cell.setattr(*name, value)?;
    }
    for (name, value) in FLOAT_FIELDS.iter().zip(plan.floats) {
        cell.setattr(*name, PyFloat::new(py, value))?;
    }
    add_counts(
        &cell.getattr(intern!(py, "hist"))?.cast_into::<PyDict>()?,
        &plan.hist,
    )?;
    add_counts(
        &cell.getattr(intern!(py, "counts"))?.cast_into::<PyDict>()?,
        &plan.counts,
    )?;
    let sums = cell.getattr(intern!(py, "sums"))?.cast_into::<PyDict>()?;
    for (slot, total) in &plan.sums {
        sums.set_item(slot, PyFloat::new(py, *total))?;
    }
    let units = cell.getattr(intern!(py, "units"))?.cast_into::<PySet>()?;
    // One string per unit, in the set and as the key of its counts.
    let mut texts = Vec::with_capacity(plan.units.len());
    for unit in &plan.units {
        let text = PyString::new(py, unit);
        units.add(&text)?;
        texts.push(text);
    }
    for (field, which, places) in [
        (intern!(py, "unit_requests"), 0, &plan.requested),
        (intern!(py, "unit_errors"), 1, &plan.failed),
    ] {
        if places.is_empty() {
            continue;
        }
        let dict = cell.getattr(field)?.cast_into::<PyDict>()?;
        // A cell's first fold finds its dictionary empty: nothing to add to.
        let fresh = dict.is_empty();
        for &place in places {
            let (text, n) = (
                &texts[place as usize],
                plan.unit_counts[place as usize][which],
            );
            let before = if fresh {
                0
            } else {
                match dict.get_item(text)? {
                    Some(found) => found.extract::<i64>()?,
                    None => 0,
                }
            };
            dict.set_item(text, before + n)?;
        }
    }
    if !plan.failures.is_empty() {
        let failed = cell.getattr(intern!(py, "failed"))?.cast_into::<PyList>()?;
        for (failure, example, bucket) in &plan.failures {
            let example = match example {
                Some(text) => PyString::new(py, text).into_any(),
                None => py.None().into_bound(py),
            };
            let item = PyTuple::new(
                py,
                [
                    PyString::new(py, failure).into_any(),
                    example,
                    bucket.into_pyobject(py)?.into_any(),
                ],
            )?;
            failed.append(item)?;
        }
    }
    if !plan.failed_requests.is_empty() {
        let listed = cell
            .getattr(intern!(py, "failed_requests"))?
            .cast_into::<PyList>()?;
        for (failure, bucket) in &plan.failed_requests {
            let item = PyTuple::new(
                py,
                [
                    PyString::new(py, failure).into_any(),
                    bucket.into_pyobject(py)?.into_any(),
                ],
            )?;
            listed.append(item)?;
        }
    }
    if plan.named.is_empty() {
        return Ok(());
    }
    let named = cell.getattr(intern!(py, "named"))?.cast_into::<PyDict>()?;
    for entry in &plan.named {
        let delta = match &entry.delta {
            Some(delta) => delta.clone(),
            None => {
                let delta = folder.named_type.bind(py).call0()?;
                named.set_item(entry.name, &delta)?;
                delta
            }
        };
        delta.setattr(intern!(py, "conv"), entry.ints[0])?;
        delta.setattr(intern!(py, "cv_n"), entry.ints[1])?;
        delta.setattr(intern!(py, "cv_sum"), PyFloat::new(py, entry.floats[0]))?;
        delta.setattr(intern!(py, "cv_sq"), PyFloat::new(py, entry.floats[1]))?;
    }
    Ok(())
}

#[pymethods]
impl Folder {
    #[new]
    #[pyo3(signature = (
        *, max_bytes, chars, failure_chars, max_ts, max_version, latency, value, tags, arms,
        cohorts, compared, layout, edges, cell_type, named_type, name_ok
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_bytes: usize,
        chars: (usize, usize, usize),
        failure_chars: (usize, usize),
        max_ts: u64,
        max_version: u64,
        latency: (f64, f64),
        value: (f64, f64),
        tags: Vec<String>,
        arms: Vec<String>,
        cohorts: Vec<String>,
        compared: String,
        layout: [i64; 12],
        edges: Vec<f64>,
        cell_type: Py<PyAny>,
        named_type: Py<PyAny>,
        name_ok: Py<PyAny>,
    ) -> PyResult<Self> {
        if tags.len() != ALLOWED.len() || layout[0] <= 0 || layout[1] <= 0 || layout[11] <= 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "a layout this fold cannot read",
            ));
        }
        let (id_chars, unit_chars, flag_chars) = chars;
        let (failure_chars, example_chars) = failure_chars;
        Ok(Folder {
            max_bytes,
            id_chars,
            unit_chars,
            flag_chars,
            failure_chars,
            example_chars,
            max_ts,
            max_version,
            latency,
            value,
            tags,
            arms,
            cohorts,
            compared,
            layout,
            edges,
            cell_type,
            named_type,
            name_ok,
        })
    }

    /// Fold every value of `values` into `into` (cells by key) and `ids` (the delta's
    /// event ids): True; or False, having changed nothing (see the module).
    fn fold<'py>(
        &self,
        values: &Bound<'py, PyList>,
        into: &Bound<'py, PyDict>,
        ids: &Bound<'py, PySet>,
        flag_ok: &Bound<'py, PyAny>,
    ) -> PyResult<bool> {
        let mut raws = Vec::with_capacity(values.len());
        for value in values.iter() {
            match value.cast_into::<PyBytes>() {
                Ok(raw) => raws.push(raw),
                Err(_) => return Ok(false),
            }
        }
        let mut parsed = Vec::with_capacity(raws.len());
        let mut failures = Vec::new();
        for raw in &raws {
            match self.parse(raw.as_bytes(), &mut failures) {
                Ok(event) => parsed.push(event),
                Err(Bail) => return Ok(false),
            }
        }
        let Ok((new_ids, plans)) = self.prepare(&parsed, &failures, into, ids, flag_ok) else {
            return Ok(false);
        };
        for id in new_ids {
            ids.add(id)?;
        }
        for plan in &plans {
            write(plan, into, self)?;
        }
        Ok(true)
    }
}

#[pymodule]
fn rollout_fold_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Folder>()?;
    module.add_class::<lanes::LaneAdder>()?;
    module.add_function(wrap_pyfunction!(watch::watched_members, module)?)
}
