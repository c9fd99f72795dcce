//! Python binding of [`crate::geo`]: whole batches in, flat buffers out, the GIL released while Rust works.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::hub_error;
use crate::geo::coords::convert_in_place;
use crate::geo::geojson::PropertyNames;
use crate::geo::{CoordSystem, GeoError, GridIndex, LayerKind, LayerSource};

/// `hub.errors.GeoError` carrying the core's message.
fn geo_error(error: GeoError) -> PyErr {
    Python::attach(|py| hub_error(py, "GeoError", error.to_string()))
}

fn coord_system(name: &str) -> PyResult<CoordSystem> {
    name.parse().map_err(geo_error)
}

/// A float64 buffer (numpy array, array.array) is copied in one go; any other sequence item by item.
fn floats(values: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    match PyBuffer::<f64>::get(values) {
        Ok(buffer) => buffer.to_vec(values.py()),
        Err(_) => values.extract::<Vec<f64>>(),
    }
}

fn bytes_of<'py, T: Copy, const N: usize>(
    py: Python<'py>,
    values: &[T],
    to_bytes: impl Fn(T) -> [u8; N],
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, values.len() * N, |buffer| {
        for (chunk, value) in buffer.chunks_exact_mut(N).zip(values) {
            chunk.copy_from_slice(&to_bytes(*value));
        }
        Ok(())
    })
}

/// Converts lon/lat batches between "wgs84", "gcj02" and "bd09".
#[pyfunction]
fn convert_coords(
    py: Python<'_>,
    lons: &Bound<'_, PyAny>,
    lats: &Bound<'_, PyAny>,
    src: &str,
    dst: &str,
) -> PyResult<(Vec<f64>, Vec<f64>)> {
    let (src, dst) = (coord_system(src)?, coord_system(dst)?);
    let (mut lons, mut lats) = (floats(lons)?, floats(lats)?);
    py.detach(|| convert_in_place(&mut lons, &mut lats, src, dst)).map_err(geo_error)?;
    Ok((lons, lats))
}

/// A batch answer as bytes: offsets (u32), cells (u32), distances in metres (f64), admin counts (u8).
type BatchBytes<'py> = (Bound<'py, PyBytes>, Bound<'py, PyBytes>, Bound<'py, PyBytes>, Bound<'py, PyBytes>);

/// One layer as the Python side hands it over.
type LayerTuple<'py> = (String, String, Bound<'py, PyBytes>, String, String, String, String, String, bool);

/// The grid index; immutable and thread-safe, so queries from many threads need no lock.
#[pyclass(frozen, module = "hub._core")]
struct GeoIndex {
    inner: GridIndex,
}

#[pymethods]
impl GeoIndex {
    /// Builds the index from (name, kind, geojson bytes, crs, id/name/level/parent property, strict) tuples.
    #[staticmethod]
    fn build(py: Python<'_>, layers: Vec<LayerTuple<'_>>, tolerance_m: f64) -> PyResult<Self> {
        let mut sources = Vec::with_capacity(layers.len());
        for (name, kind, data, crs, id, name_property, level, parent, strict) in &layers {
            let kind = match kind.as_str() {
                "admin" => LayerKind::Admin,
                "overlay" => LayerKind::Overlay,
                other => {
                    return Err(geo_error(GeoError::new(format!(
                        "layer {name:?}: kind {other:?} is neither \"admin\" nor \"overlay\""
                    ))))
                }
            };
            sources.push(LayerSource {
                name: name.clone(),
                kind,
                geojson: data.as_bytes(),
                crs: coord_system(crs)?,
                properties: PropertyNames {
                    id: id.clone(),
                    name: name_property.clone(),
                    level: level.clone(),
                    parent: parent.clone(),
                },
                strict: *strict,
            });
        }
        let inner = py.detach(|| GridIndex::build(&sources, tolerance_m)).map_err(geo_error)?;
        Ok(Self { inner })
    }

    /// Resolves a batch; returns (offsets u32, cells u32, distances_m f64, admin_counts u8) as bytes.
    fn locate_many<'py>(
        &self,
        py: Python<'py>,
        lons: &Bound<'py, PyAny>,
        lats: &Bound<'py, PyAny>,
        crs: &str,
    ) -> PyResult<BatchBytes<'py>> {
        let crs = coord_system(crs)?;
        let (lons, lats) = (floats(lons)?, floats(lats)?);
        let batch = py.detach(|| self.inner.locate_batch(&lons, &lats, crs)).map_err(geo_error)?;
        Ok((
            bytes_of(py, &batch.offsets, u32::to_ne_bytes)?,
            bytes_of(py, &batch.cells, u32::to_ne_bytes)?,
            bytes_of(py, &batch.distances_m, f64::to_ne_bytes)?,
            PyBytes::new(py, &batch.admin_counts),
        ))
    }

    /// Indices of the cells whose area intersects a GeoJSON geometry (or Feature), in id order.
    fn cells_intersecting(&self, py: Python<'_>, geometry: &Bound<'_, PyBytes>, crs: &str) -> PyResult<Vec<u32>> {
        let crs = coord_system(crs)?;
        let geometry = geometry.as_bytes();
        py.detach(|| self.inner.cells_intersecting(geometry, crs)).map_err(geo_error)
    }

    /// Cells met by each of many GeoJSON geometries in one crossing; returns (offsets u32, cells u32) as bytes.
    fn cells_intersecting_many<'py>(
        &self,
        py: Python<'py>,
        geometries: Vec<Bound<'py, PyBytes>>,
        crs: &str,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let crs = coord_system(crs)?;
        let texts: Vec<&[u8]> = geometries.iter().map(|g| g.as_bytes()).collect();
        let found = py.detach(|| self.inner.cells_intersecting_many(&texts, crs)).map_err(geo_error)?;
        Ok((bytes_of(py, &found.offsets, u32::to_ne_bytes)?, bytes_of(py, &found.cells, u32::to_ne_bytes)?))
    }

    /// (layer, level, id, name) of a cell index.
    fn cell(&self, index: usize) -> PyResult<(String, String, String, String)> {
        let view =
            self.inner.cell(index).ok_or_else(|| PyIndexError::new_err(format!("cell index {index} out of range")))?;
        Ok((view.layer.to_owned(), view.level.to_owned(), view.id.to_owned(), view.name.to_owned()))
    }

    /// Indices of a cell's admin chain, deepest first (empty for an overlay cell).
    fn admin_chain(&self, index: u32) -> Vec<u32> {
        self.inner.admin_chain(index)
    }

    fn __len__(&self) -> usize {
        self.inner.cell_count()
    }

    #[getter]
    fn tolerance_m(&self) -> f64 {
        self.inner.tolerance_m()
    }

    /// Bytes held, by part, and the raw GeoJSON vertex bytes for comparison.
    fn memory_use<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let memory = self.inner.memory_use();
        let dict = PyDict::new(py);
        dict.set_item("geometry", memory.geometry)?;
        dict.set_item("spatial_index", memory.spatial_index)?;
        dict.set_item("metadata", memory.metadata)?;
        dict.set_item("raw_vertex_bytes", memory.raw_vertex_bytes)?;
        Ok(dict)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(convert_coords, m)?)?;
    m.add_class::<GeoIndex>()?;
    Ok(())
}
