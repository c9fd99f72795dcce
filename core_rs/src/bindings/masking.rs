//! Python binding of [`crate::masking`]: personal data masked in a batch of texts with the GIL released.

use crate::masking::{Mask, Shape, TextMasker as Masker};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;

#[pyclass(module = "hub._core", name = "TextMasker", frozen)]
pub struct TextMasker {
    masker: Masker,
    shapes: usize,
}

fn mask(kind: &str, keep_start: usize, keep_end: usize) -> PyResult<Mask> {
    match kind {
        "middle" => Ok(Mask::Middle { keep_start, keep_end }),
        "stripped_middle" => Ok(Mask::StrippedMiddle { keep_start, keep_end }),
        "phone" => Ok(Mask::Phone),
        other => Err(PyValueError::new_err(format!("unknown mask {other:?}; known: middle, stripped_middle, phone"))),
    }
}

#[pymethods]
impl TextMasker {
    /// `run`: where a shape can start; `shapes`: `(name, pattern, mask, keep_start, keep_end)` with mask
    /// `middle`, `stripped_middle` or `phone`, in the order they are tried; `mask_char` replaces what is hidden.
    #[new]
    fn new(run: &str, shapes: Vec<(String, String, String, usize, usize)>, mask_char: char) -> PyResult<Self> {
        let count = shapes.len();
        let shapes = shapes
            .into_iter()
            .map(|(name, pattern, kind, keep_start, keep_end)| {
                Ok(Shape { name, pattern, mask: mask(&kind, keep_start, keep_end)? })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let masker = Masker::new(run, &shapes, mask_char).map_err(PyValueError::new_err)?;
        Ok(TextMasker { masker, shapes: count })
    }

    /// `(masked, counts, undecided)`: per text its masked form (None when unchanged, or None given), the
    /// number of matches masked per shape, and the positions of the texts left to the caller.
    fn mask_many(
        &self,
        py: Python<'_>,
        texts: Vec<Option<PyBackedStr>>,
    ) -> (Vec<Option<String>>, Vec<u64>, Vec<usize>) {
        py.detach(|| {
            let mut counts = vec![0; self.shapes];
            let mut undecided = Vec::new();
            let masked = texts
                .iter()
                .enumerate()
                .map(|(position, text)| match text.as_deref().map(|text| self.masker.mask(text, &mut counts)) {
                    Some(Ok(masked)) => masked,
                    Some(Err(_)) => {
                        undecided.push(position);
                        None
                    }
                    None => None,
                })
                .collect();
            (masked, counts, undecided)
        })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TextMasker>()
}
