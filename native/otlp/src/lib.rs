//! OTLP/protobuf trace exports read straight into rollout-controller's neutral spans.
//!
//! `decode_traces` walks an `ExportTraceServiceRequest` once, by the OTLP
//! schema's field numbers, and builds the `Span` and `SpanEvent` objects the
//! pure-Python decoder builds, with the same attribute dictionaries. It answers
//! only for an export it reads exactly as the Python decoder does: one the
//! OTLP schema itself parses (every string UTF-8, every field of its known wire
//! type, nothing nested deeper than `MAX_DEPTH`, no field the schema lacks),
//! whose items are all within their bounds (ids of their lengths, names, counts
//! of items, events and attributes). For anything else it answers `None` and the
//! caller hands the export to the Python decoder, which refuses what it must,
//! item by item. An attribute set holding a value that is not kept as it is (not
//! a scalar, a key or string past its bound) is handed to the caller's `kept`,
//! the core's own bounding, so that logic lives in one place.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString, PyTuple};

/// Deeper than this the export is left to the Python decoder (protobuf's own limit is 100).
const MAX_DEPTH: u32 = 64;
/// Strings up to this many bytes are made once per export (keys always).
const SHARED_TEXT: usize = 64;

enum Fail {
    /// Not read here: the Python decoder answers.
    Bail,
    Py(PyErr),
}

impl From<PyErr> for Fail {
    fn from(err: PyErr) -> Self {
        Fail::Py(err)
    }
}

type R<T> = Result<T, Fail>;

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn more(&self) -> bool {
        self.pos < self.buf.len()
    }

    fn varint(&mut self) -> R<u64> {
        let mut out = 0u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(Fail::Bail)?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(Fail::Bail);
            }
            out |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(out);
            }
        }
        Err(Fail::Bail)
    }

    fn tag(&mut self) -> R<(u32, u8)> {
        let tag = self.varint()?;
        let field = tag >> 3;
        if field == 0 || field > (1 << 29) - 1 {
            return Err(Fail::Bail);
        }
        Ok((field as u32, (tag & 7) as u8))
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Fail::Bail)?;
        let out = self.buf.get(self.pos..end).ok_or(Fail::Bail)?;
        self.pos = end;
        Ok(out)
    }

    fn bytes(&mut self) -> R<&'a [u8]> {
        let n = self.varint()?;
        if n > i32::MAX as u64 {
            return Err(Fail::Bail);
        }
        self.take(n as usize)
    }

    fn text(&mut self) -> R<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Fail::Bail)
    }

    fn fixed64(&mut self) -> R<u64> {
        let raw = self.take(8)?;
        Ok(u64::from_le_bytes(raw.try_into().map_err(|_| Fail::Bail)?))
    }

    fn fixed32(&mut self) -> R<u32> {
        let raw = self.take(4)?;
        Ok(u32::from_le_bytes(raw.try_into().map_err(|_| Fail::Bail)?))
    }

    /// Reads past a field of a known scalar or string type (checking the string).
    fn skip(&mut self, wire: u8, utf8: bool) -> R<()> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.fixed64().map(drop),
            I32 => self.fixed32().map(drop),
            LEN if utf8 => self.text().map(drop),
            LEN => self.bytes().map(drop),
            _ => Err(Fail::Bail),
        }
    }
}

fn deeper(depth: u32) -> R<u32> {
    if depth >= MAX_DEPTH {
        return Err(Fail::Bail);
    }
    Ok(depth + 1)
}

// The messages whose content is not read are still walked, as protobuf parses
// them, so that an export is read here only when the schema would parse it.

fn check_any(buf: &[u8], depth: u32) -> R<()> {
    let depth = deeper(depth)?;
    let mut r = Reader::new(buf);
    while r.more() {
        match r.tag()? {
            (1, LEN) => r.skip(LEN, true)?,
            (2 | 3, VARINT) => r.skip(VARINT, false)?,
            (4, I64) => r.skip(I64, false)?,
            (5, LEN) => check_repeated(r.bytes()?, depth, check_any)?,
            (6, LEN) => check_repeated(r.bytes()?, depth, check_pair)?,
            (7, LEN) => r.skip(LEN, false)?,
            _ => return Err(Fail::Bail),
        }
    }
    Ok(())
}

/// An ArrayValue or a KeyValueList: field 1 repeated, each checked by `each`.
fn check_repeated(buf: &[u8], depth: u32, each: fn(&[u8], u32) -> R<()>) -> R<()> {
    let depth = deeper(depth)?;
    let mut r = Reader::new(buf);
    while r.more() {
        match r.tag()? {
            (1, LEN) => each(r.bytes()?, depth)?,
            _ => return Err(Fail::Bail),
        }
    }
    Ok(())
}

fn check_pair(buf: &[u8], depth: u32) -> R<()> {
    let depth = deeper(depth)?;
    let mut r = Reader::new(buf);
    while r.more() {
        match r.tag()? {
            (1, LEN) => r.skip(LEN, true)?,
            (2, LEN) => check_any(r.bytes()?, depth)?,
            _ => return Err(Fail::Bail),
        }
    }
    Ok(())
}

/// An InstrumentationScope: name, version, attributes, dropped count.
fn check_scope(buf: &[u8], depth: u32) -> R<()> {
    let depth = deeper(depth)?;
    let mut r = Reader::new(buf);
    while r.more() {
        match r.tag()? {
            (1 | 2, LEN) => r.skip(LEN, true)?,
            (3, LEN) => check_pair(r.bytes()?, depth)?,
            (4, VARINT) => r.skip(VARINT, false)?,
            _ => return Err(Fail::Bail),
        }
    }
    Ok(())
}

fn check_link(buf: &[u8], depth: u32) -> R<()> {
    let depth = deeper(depth)?;
    let mut r = Reader::new(buf);
    while r.more() {
        match r.tag()? {
            (1 | 2, LEN) => r.skip(LEN, false)?,
            (3, LEN) => r.skip(LEN, true)?,
            (4, LEN) => check_pair(r.bytes()?, depth)?,
            (5, VARINT) => r.skip(VARINT, false)?,
            (6, I32) => r.skip(I32, false)?,
            _ => return Err(Fail::Bail),
        }
    }
    Ok(())
}

/// A Status's code (its message checked, not read).
fn status_code(buf: &[u8], depth: u32) -> R<i32> {
    deeper(depth)?;
    let mut r = Reader::new(buf);
    let mut code = 0;
    while r.more() {
        match r.tag()? {
            (2, LEN) => r.skip(LEN, true)?,
            (3, VARINT) => code = r.varint()? as i32,
            _ => return Err(Fail::Bail),
        }
    }
    Ok(code)
}

enum Value<'a> {
    Text(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// An empty AnyValue, an array, a key-value list, bytes: not kept.
    Other,
}

/// A KeyValue's key and value (the last field of the value's oneof wins, as in protobuf).
fn pair(buf: &[u8], depth: u32) -> R<(&str, Value<'_>)> {
    let depth = deeper(depth)?;
    let mut r = Reader::new(buf);
    let (mut key, mut value, mut valued) = ("", Value::Other, false);
    while r.more() {
        match r.tag()? {
            (1, LEN) => key = r.text()?,
            (2, LEN) if !valued => {
                valued = true; // a second value would be merged into the first: not read here
                value = any_value(r.bytes()?, depth)?;
            }
            _ => return Err(Fail::Bail),
        }
    }
    Ok((key, value))
}

fn any_value(buf: &[u8], depth: u32) -> R<Value<'_>> {
    let depth = deeper(depth)?;
    let mut r = Reader::new(buf);
    let mut value = Value::Other;
    while r.more() {
        value = match r.tag()? {
            (1, LEN) => Value::Text(r.text()?),
            (2, VARINT) => Value::Bool(r.varint()? != 0),
            (3, VARINT) => Value::Int(r.varint()? as i64),
            (4, I64) => Value::Double(f64::from_bits(r.fixed64()?)),
            (5, LEN) => check_repeated(r.bytes()?, depth, check_any).map(|()| Value::Other)?,
            (6, LEN) => check_repeated(r.bytes()?, depth, check_pair).map(|()| Value::Other)?,
            (7, LEN) => r.bytes().map(|_| Value::Other)?,
            _ => return Err(Fail::Bail),
        };
    }
    Ok(value)
}

fn chars_over(text: &str, limit: usize) -> bool {
    text.len() > limit && text.chars().count() > limit
}

#[derive(Clone, Copy)]
struct Bounds {
    max_items: usize,
    max_attributes: usize,
    max_events: usize,
    max_key_chars: usize,
    max_value_chars: usize,
}

struct Export<'py, 'a> {
    py: Python<'py>,
    bounds: Bounds,
    span: Bound<'py, PyAny>,
    event: Bound<'py, PyAny>,
    empty: Bound<'py, PyAny>,
    kept: Bound<'py, PyAny>,
    texts: HashMap<&'a str, Bound<'py, PyString>>,
    items: usize,
}

impl<'py, 'a> Export<'py, 'a> {
    /// A string of the export, made once when short (keys, flags, variants, names repeat).
    fn text(&mut self, text: &'a str) -> Bound<'py, PyString> {
        if text.len() > SHARED_TEXT {
            return PyString::new(self.py, text);
        }
        let py = self.py;
        self.texts
            .entry(text)
            .or_insert_with(|| PyString::new(py, text))
            .clone()
    }

    /// An item's attributes as the Python decoder keeps them.
    fn attributes(&mut self, pairs: &[&'a [u8]], depth: u32) -> R<Bound<'py, PyAny>> {
        if pairs.is_empty() {
            return Ok(self.empty.clone());
        }
        if pairs.len() > self.bounds.max_attributes {
            return Err(Fail::Bail);
        }
        let py = self.py;
        let values = PyDict::new(py);
        let mut as_read = true;
        for raw in pairs {
            let (key, value) = pair(raw, depth)?;
            as_read &= !chars_over(key, self.bounds.max_key_chars);
            let value = match value {
                Value::Text(text) => {
                    as_read &= !chars_over(text, self.bounds.max_value_chars);
                    self.text(text).into_any()
                }
                Value::Bool(flag) => PyBool::new(py, flag).to_owned().into_any(),
                Value::Int(number) => number.into_pyobject(py).map_err(PyErr::from)?.into_any(),
                Value::Double(number) => PyFloat::new(py, number).into_any(),
                Value::Other => {
                    as_read = false;
                    py.None().into_bound(py)
                }
            };
            values.set_item(self.text(key), value)?;
        }
        if as_read {
            return Ok(values.into_any());
        }
        Ok(self.kept.call1((values, pairs.len()))?)
    }

    fn export(&mut self, buf: &'a [u8]) -> R<Bound<'py, PyList>> {
        let out = PyList::empty(self.py);
        let mut r = Reader::new(buf);
        while r.more() {
            match r.tag()? {
                (1, LEN) => self.resource_spans(r.bytes()?, &out)?,
                _ => return Err(Fail::Bail),
            }
        }
        Ok(out)
    }

    fn resource_spans(&mut self, buf: &'a [u8], out: &Bound<'py, PyList>) -> R<()> {
        let depth = 1;
        let mut r = Reader::new(buf);
        let (mut resource, mut scopes) = (None, Vec::new());
        while r.more() {
            match r.tag()? {
                (1, LEN) if resource.is_none() => resource = Some(r.bytes()?),
                (2, LEN) => scopes.push(r.bytes()?),
                (3, LEN) => r.skip(LEN, true)?,
                _ => return Err(Fail::Bail),
            }
        }
        let resource = self.resource(resource.unwrap_or_default(), depth + 1)?;
        for scope in scopes {
            self.scope_spans(scope, &resource, out, depth + 1)?;
        }
        Ok(())
    }

    fn resource(&mut self, buf: &'a [u8], depth: u32) -> R<Bound<'py, PyAny>> {
        let mut r = Reader::new(buf);
        let mut pairs = Vec::new();
        while r.more() {
            match r.tag()? {
                (1, LEN) => pairs.push(r.bytes()?),
                (2, VARINT) => r.skip(VARINT, false)?,
                _ => return Err(Fail::Bail),
            }
        }
        self.attributes(&pairs, depth)
    }

    fn scope_spans(
        &mut self,
        buf: &'a [u8],
        resource: &Bound<'py, PyAny>,
        out: &Bound<'py, PyList>,
        depth: u32,
    ) -> R<()> {
        let mut r = Reader::new(buf);
        while r.more() {
            match r.tag()? {
                (1, LEN) => check_scope(r.bytes()?, depth)?,
                (2, LEN) => {
                    self.items += 1;
                    if self.items > self.bounds.max_items {
                        return Err(Fail::Bail);
                    }
                    out.append(self.span(r.bytes()?, resource, depth + 1)?)?;
                }
                (3, LEN) => r.skip(LEN, true)?,
                _ => return Err(Fail::Bail),
            }
        }
        Ok(())
    }

    fn span(
        &mut self,
        buf: &'a [u8],
        resource: &Bound<'py, PyAny>,
        depth: u32,
    ) -> R<Bound<'py, PyAny>> {
        let mut r = Reader::new(buf);
        let (mut trace, mut own, mut parent, mut name): (&[u8], &[u8], &[u8], &str) =
            (&[], &[], &[], "");
        let (mut kind, mut start, mut end, mut code) = (0i32, 0u64, 0u64, 0i32);
        let (mut pairs, mut events, mut status) = (Vec::new(), Vec::new(), false);
        while r.more() {
            match r.tag()? {
                (1, LEN) => trace = r.bytes()?,
                (2, LEN) => own = r.bytes()?,
                (3, LEN) => r.skip(LEN, true)?,
                (4, LEN) => parent = r.bytes()?,
                (5, LEN) => name = r.text()?,
                (6, VARINT) => kind = r.varint()? as i32,
                (7, I64) => start = r.fixed64()?,
                (8, I64) => end = r.fixed64()?,
                (9, LEN) => pairs.push(r.bytes()?),
                (10 | 12 | 14, VARINT) => r.skip(VARINT, false)?,
                (11, LEN) => events.push(r.bytes()?),
                (13, LEN) => check_link(r.bytes()?, depth)?,
                (15, LEN) if !status => {
                    status = true; // a second status would be merged into the first
                    code = status_code(r.bytes()?, depth)?;
                }
                (16, I32) => r.skip(I32, false)?,
                _ => return Err(Fail::Bail),
            }
        }
        let bounds = self.bounds;
        if events.len() > bounds.max_events || chars_over(name, bounds.max_value_chars) {
            return Err(Fail::Bail);
        }
        let trace_id = hex_id(self.py, trace, 16)?;
        let span_id = hex_id(self.py, own, 8)?;
        let parent_id = if parent.is_empty() || parent == [0u8; 8] {
            PyString::new(self.py, "")
        } else {
            hex_id(self.py, parent, 8)?
        };
        let attributes = self.attributes(&pairs, depth + 1)?;
        let mut made = Vec::with_capacity(events.len());
        for event in events {
            made.push(self.event(event, depth + 1)?);
        }
        let name = self.text(name);
        let args = (
            trace_id, span_id, parent_id, name, kind, start, end, code, attributes,
        );
        let (a, b, c, d, e, f, g, h, i) = args;
        let events = PyTuple::new(self.py, made)?;
        Ok(self
            .span
            .call1((a, b, c, d, e, f, g, h, i, events, resource))?)
    }

    fn event(&mut self, buf: &'a [u8], depth: u32) -> R<Bound<'py, PyAny>> {
        let mut r = Reader::new(buf);
        let (mut time, mut name, mut pairs) = (0u64, "", Vec::new());
        while r.more() {
            match r.tag()? {
                (1, I64) => time = r.fixed64()?,
                (2, LEN) => name = r.text()?,
                (3, LEN) => pairs.push(r.bytes()?),
                (4, VARINT) => r.skip(VARINT, false)?,
                _ => return Err(Fail::Bail),
            }
        }
        if chars_over(name, self.bounds.max_value_chars) {
            return Err(Fail::Bail);
        }
        let attributes = self.attributes(&pairs, depth + 1)?;
        let name = self.text(name);
        Ok(self.event.call1((name, time, attributes))?)
    }
}

/// An id's lower-case hex; not read here unless it has its length and is not all zeros.
fn hex_id<'py>(py: Python<'py>, raw: &[u8], length: usize) -> R<Bound<'py, PyString>> {
    if raw.len() != length || raw.iter().all(|&byte| byte == 0) {
        return Err(Fail::Bail);
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in raw.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 15)];
    }
    let text = std::str::from_utf8(&out[..2 * length]).map_err(|_| Fail::Bail)?;
    Ok(PyString::new(py, text))
}

/// The spans of an OTLP/protobuf `ExportTraceServiceRequest`, made with `span` and
/// `event` (the neutral types' classes), `empty` for an item without attributes and
/// `kept(values, count)` bounding an attribute set not kept as read; `None` when the
/// export holds anything not read here (see the module's documentation).
#[pyfunction]
#[pyo3(signature = (raw, bounds, span, event, empty, kept))]
fn decode_traces<'py>(
    py: Python<'py>,
    raw: &[u8],
    bounds: (usize, usize, usize, usize, usize),
    span: Bound<'py, PyAny>,
    event: Bound<'py, PyAny>,
    empty: Bound<'py, PyAny>,
    kept: Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let (max_items, max_attributes, max_events, max_key_chars, max_value_chars) = bounds;
    let bounds = Bounds {
        max_items,
        max_attributes,
        max_events,
        max_key_chars,
        max_value_chars,
    };
    let mut export = Export {
        py,
        bounds,
        span,
        event,
        empty,
        kept,
        texts: HashMap::new(),
        items: 0,
    };
    match export.export(raw) {
        Ok(spans) => Ok(Some(spans)),
        Err(Fail::Bail) => Ok(None),
        Err(Fail::Py(err)) => Err(err),
    }
}

#[pymodule]
fn rollout_otlp_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(decode_traces, module)?)
}
