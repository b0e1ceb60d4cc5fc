//! A flush's unit bucket counts added to the owner's copy of a cell's lanes, in place, as
//! `controller.adapters.redis.cells.copies` adds them in Python (the reference): each
//! count to its slot's lane of the low words (an `array('H')`), a word past 16 bits
//! carried into the lane's high word (an `array('I')`), each array grown with zeros to the
//! highest lane added to, as `BITFIELD` grows a string.

use std::cell::Cell;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// The lanes of the unit bucket slots, made once from the layout's table.
#[pyclass(frozen)]
pub struct LaneAdder {
    lane_of: Vec<usize>,
}

/// `words` (an array of `width`-byte items) grown with zeros to at least `size` items.
fn grown(words: &Bound<'_, PyAny>, width: usize, size: usize) -> PyResult<()> {
    let held = words.len()?;
    if size > held {
        let zeros = PyBytes::new(words.py(), &vec![0u8; width * (size - held)]);
        words.call_method1("frombytes", (zeros,))?;
    }
    Ok(())
}

fn writable<'a, T: pyo3::buffer::Element>(
    py: Python<'a>,
    buffer: &'a PyBuffer<T>,
) -> PyResult<&'a [Cell<T>]> {
    buffer
        .as_mut_slice(py)
        .ok_or_else(|| PyValueError::new_err("not a writable array of words"))
}

#[pymethods]
impl LaneAdder {
    #[new]
    fn new(lane_of: Vec<usize>) -> Self {
        LaneAdder { lane_of }
    }

    /// `counts` (slot to a positive count) added to `low` and `high` in place: whether a
    /// word was carried into `high`, or None where a high word would pass 32 bits (the
    /// arrays then half added to, to be let go).
    fn add(
        &self,
        py: Python<'_>,
        low: &Bound<'_, PyAny>,
        high: &Bound<'_, PyAny>,
        counts: &Bound<'_, PyDict>,
    ) -> PyResult<Option<bool>> {
        let mut adds = Vec::with_capacity(counts.len());
        let mut top = 0usize;
        for (slot, count) in counts.iter() {
            let slot: usize = slot.extract()?;
            let lane = *self
                .lane_of
                .get(slot)
                .ok_or_else(|| PyValueError::new_err(format!("no unit bucket slot {slot}")))?;
            let count: u64 = count.extract()?;
            top = top.max(lane + 1);
            adds.push((lane, count));
        }
        if adds.is_empty() {
            return Ok(Some(false));
        }
        grown(low, 2, top)?;
        let mut carries = Vec::new();
        {
            let buffer = PyBuffer::<u16>::get(low)?;
            let words = writable(py, &buffer)?;
            for &(lane, count) in &adds {
                let word = u64::from(words[lane].get()) + count;
                if word > 0xFFFF {
                    carries.push((lane, word >> 16));
                }
                words[lane].set((word & 0xFFFF) as u16);
            }
        }
        if carries.is_empty() {
            return Ok(Some(false));
        }
        let top = carries.iter().map(|&(lane, _)| lane + 1).max().unwrap_or(0);
        grown(high, 4, top)?;
        let buffer = PyBuffer::<u32>::get(high)?;
        let words = writable(py, &buffer)?;
        for (lane, carry) in carries {
            let word = u64::from(words[lane].get()) + carry;
            if word > u64::from(u32::MAX) {
                return Ok(None);
            }
            words[lane].set(word as u32);
        }
        Ok(Some(true))
    }
}
