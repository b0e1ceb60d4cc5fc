//! The draw of units into the watched sample, as `controller.core.stats.watched_members`
//! makes it: MurmurHash3's x64 128-bit variant of each unit's UTF-8 bytes (lone surrogates
//! passed through, as Python's `surrogatepass` writes them), the second 64-bit word drawing
//! the unit, the first its member as signed decimal text. The Python function is the
//! reference; the unit tests compare both on generated and hostile units.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PySet, PyString};

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

fn mix_final(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

fn mixed_first(k: u64) -> u64 {
    k.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

fn mixed_second(k: u64) -> u64 {
    k.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

/// Little-endian word of up to eight bytes (the tail's, zero-padded).
fn word(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// MurmurHash3_x64_128 of `data` with `seed`: its two 64-bit words, first and second.
pub fn murmur3_x64_128(data: &[u8], seed: u32) -> (u64, u64) {
    let (mut h1, mut h2) = (u64::from(seed), u64::from(seed));
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        h1 ^= mixed_first(word(&block[..8]));
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mixed_second(word(&block[8..]));
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    if tail.len() > 8 {
        h2 ^= mixed_second(word(&tail[8..]));
    }
    if !tail.is_empty() {
        h1 ^= mixed_first(word(&tail[..tail.len().min(8)]));
    }
    let length = data.len() as u64;
    h1 ^= length;
    h2 ^= length;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = mix_final(h1);
    h2 = mix_final(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

/// The units of `units` (a set, or any iterable of strings) drawn into the watched sample
/// (those whose second word has no bit of `draw` set), each as the signed decimal text of
/// its first word. A set is walked in place, without an iterator object.
#[pyfunction]
pub fn watched_members<'py>(
    py: Python<'py>,
    units: &Bound<'py, PyAny>,
    seed: u32,
    draw: u64,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    if let Ok(set) = units.cast::<PySet>() {
        for unit in set.iter() {
            draw_one(&unit, seed, draw, &out)?;
        }
        return Ok(out);
    }
    for unit in units.try_iter()? {
        draw_one(&unit?, seed, draw, &out)?;
    }
    Ok(out)
}

/// `unit` appended to `out` as its member where it is drawn.
fn draw_one(
    unit: &Bound<'_, PyAny>,
    seed: u32,
    draw: u64,
    out: &Bound<'_, PyList>,
) -> PyResult<()> {
    let text = unit.cast::<PyString>()?;
    let (first, second) = match text.to_str() {
        Ok(utf8) => murmur3_x64_128(utf8.as_bytes(), seed),
        Err(_) => {
            // A lone surrogate: the bytes Python's encoder writes for it.
            let encoded = text.call_method1("encode", ("utf-8", "surrogatepass"))?;
            murmur3_x64_128(encoded.cast::<PyBytes>()?.as_bytes(), seed)
        }
    };
    if second & draw == 0 {
        out.append((first as i64).to_string())?;
    }
    Ok(())
}
