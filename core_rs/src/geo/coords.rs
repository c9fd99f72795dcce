//! WGS-84 ↔ GCJ-02 ↔ BD-09 conversion.
//!
//! GCJ-02 is the published obfuscation formula on the Krasovsky ellipsoid (a = 6378245,
//! e² = 0.00669342162296594323), applied only inside China's bounding box; BD-09 is Baidu's offset of
//! GCJ-02 with x_pi = π·3000/180. GCJ-02 → WGS-84 has no closed form: it is inverted exactly (to
//! 1e-12°) by fixed-point iteration, not by the common one-step approximation that is off by metres.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use super::GeoError;

const KRASOVSKY_A: f64 = 6378245.0;
const KRASOVSKY_EE: f64 = 0.006_693_421_622_965_943;
const X_PI: f64 = PI * 3000.0 / 180.0;
const INVERSE_TOLERANCE_DEG: f64 = 1e-12;
const INVERSE_MAX_ITERATIONS: usize = 30;

/// The coordinate systems a layer or a query can declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordSystem {
    Wgs84,
    Gcj02,
    Bd09,
}

impl FromStr for CoordSystem {
    type Err = GeoError;

    fn from_str(name: &str) -> Result<Self, GeoError> {
        match name.to_ascii_lowercase().as_str() {
            "wgs84" => Ok(Self::Wgs84),
            "gcj02" => Ok(Self::Gcj02),
            "bd09" => Ok(Self::Bd09),
            _ => Err(GeoError::new(format!(
                "unknown coordinate system {name:?}: expected \"wgs84\", \"gcj02\" or \"bd09\""
            ))),
        }
    }
}

impl fmt::Display for CoordSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Wgs84 => "wgs84",
            Self::Gcj02 => "gcj02",
            Self::Bd09 => "bd09",
        })
    }
}

/// Outside this box GCJ-02 equals WGS-84 (the rule every public implementation uses).
pub fn out_of_china(lng: f64, lat: f64) -> bool {
    !(72.004..=137.8347).contains(&lng) || !(0.8293..=55.8271).contains(&lat)
}

fn offset_lat(x: f64, y: f64) -> f64 {
    let mut ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    ret += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    ret += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    ret += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    ret
}

fn offset_lng(x: f64, y: f64) -> f64 {
    let mut ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    ret += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    ret += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    ret += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    ret
}

/// WGS-84 → GCJ-02 (identity outside China).
pub fn wgs84_to_gcj02(lng: f64, lat: f64) -> (f64, f64) {
    if out_of_china(lng, lat) {
        return (lng, lat);
    }
    let dlat = offset_lat(lng - 105.0, lat - 35.0);
    let dlng = offset_lng(lng - 105.0, lat - 35.0);
    let radlat = lat / 180.0 * PI;
    let magic = 1.0 - KRASOVSKY_EE * radlat.sin() * radlat.sin();
    let sqrt_magic = magic.sqrt();
    let dlat = (dlat * 180.0) / ((KRASOVSKY_A * (1.0 - KRASOVSKY_EE)) / (magic * sqrt_magic) * PI);
    let dlng = (dlng * 180.0) / (KRASOVSKY_A / sqrt_magic * radlat.cos() * PI);
    (lng + dlng, lat + dlat)
}

/// GCJ-02 → WGS-84, the exact inverse of [`wgs84_to_gcj02`] (fixed-point iteration to 1e-12°).
pub fn gcj02_to_wgs84(lng: f64, lat: f64) -> (f64, f64) {
    if out_of_china(lng, lat) {
        return (lng, lat);
    }
    let (mut wlng, mut wlat) = (lng, lat);
    for _ in 0..INVERSE_MAX_ITERATIONS {
        let (glng, glat) = wgs84_to_gcj02(wlng, wlat);
        let (dlng, dlat) = (glng - lng, glat - lat);
        wlng -= dlng;
        wlat -= dlat;
        if dlng.abs() < INVERSE_TOLERANCE_DEG && dlat.abs() < INVERSE_TOLERANCE_DEG {
            break;
        }
    }
    (wlng, wlat)
}

/// GCJ-02 → BD-09.
pub fn gcj02_to_bd09(lng: f64, lat: f64) -> (f64, f64) {
    let z = (lng * lng + lat * lat).sqrt() + 0.00002 * (lat * X_PI).sin();
    let theta = lat.atan2(lng) + 0.000003 * (lng * X_PI).cos();
    (z * theta.cos() + 0.0065, z * theta.sin() + 0.006)
}

/// BD-09 → GCJ-02 by the published formula every library uses (an approximate inverse of
/// [`gcj02_to_bd09`]: round trips agree to within ~2e-6°, under 0.25 m).
pub fn bd09_to_gcj02(lng: f64, lat: f64) -> (f64, f64) {
    let x = lng - 0.0065;
    let y = lat - 0.006;
    let z = (x * x + y * y).sqrt() - 0.00002 * (y * X_PI).sin();
    let theta = y.atan2(x) - 0.000003 * (x * X_PI).cos();
    (z * theta.cos(), z * theta.sin())
}

/// Converts one point; GCJ-02 is the hub every other conversion passes through.
pub fn convert_point(lng: f64, lat: f64, src: CoordSystem, dst: CoordSystem) -> (f64, f64) {
    if src == dst {
        return (lng, lat);
    }
    let (glng, glat) = match src {
        CoordSystem::Gcj02 => (lng, lat),
        CoordSystem::Wgs84 => wgs84_to_gcj02(lng, lat),
        CoordSystem::Bd09 => bd09_to_gcj02(lng, lat),
    };
    match dst {
        CoordSystem::Gcj02 => (glng, glat),
        CoordSystem::Wgs84 => gcj02_to_wgs84(glng, glat),
        CoordSystem::Bd09 => gcj02_to_bd09(glng, glat),
    }
}

/// Why a longitude/latitude pair is unusable, or `None` when it is a finite point on the globe.
pub fn coordinate_problem(lng: f64, lat: f64) -> Option<String> {
    if !lng.is_finite() || !lat.is_finite() {
        return Some(format!("coordinate ({lng}, {lat}) is not finite"));
    }
    if !(-180.0..=180.0).contains(&lng) || !(-90.0..=90.0).contains(&lat) {
        return Some(format!("coordinate ({lng}, {lat}) is out of range (longitude -180..180, latitude -90..90)"));
    }
    None
}

/// Converts a batch in place; the first unusable point fails the batch with its position.
pub fn convert_in_place(
    lngs: &mut [f64],
    lats: &mut [f64],
    src: CoordSystem,
    dst: CoordSystem,
) -> Result<(), GeoError> {
    if lngs.len() != lats.len() {
        return Err(GeoError::new(format!(
            "longitude and latitude batches differ in length ({} vs {})",
            lngs.len(),
            lats.len()
        )));
    }
    for (position, (lng, lat)) in lngs.iter_mut().zip(lats.iter_mut()).enumerate() {
        if let Some(problem) = coordinate_problem(*lng, *lat) {
            return Err(GeoError::new(format!("point #{position}: {problem}")));
        }
        (*lng, *lat) = convert_point(*lng, *lat, src, dst);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_beijing_vector_from_wandergis() {
        let (lng, lat) = wgs84_to_gcj02(116.404, 39.915);
        assert!((lng - 116.41024449916938).abs() < 1e-10);
        assert!((lat - 39.91640428150164).abs() < 1e-10);
    }

    #[test]
    fn exact_inverse_round_trips() {
        let (glng, glat) = wgs84_to_gcj02(104.0657, 30.6595);
        let (wlng, wlat) = gcj02_to_wgs84(glng, glat);
        assert!((wlng - 104.0657).abs() < 1e-11 && (wlat - 30.6595).abs() < 1e-11);
    }

    #[test]
    fn bd09_round_trips_through_gcj02_within_formula_precision() {
        // The published BD-09 → GCJ-02 formula is itself approximate (within ~2e-6°, under 0.25 m).
        let (blng, blat) = convert_point(104.0657, 30.6595, CoordSystem::Wgs84, CoordSystem::Bd09);
        let (wlng, wlat) = convert_point(blng, blat, CoordSystem::Bd09, CoordSystem::Wgs84);
        assert!((wlng - 104.0657).abs() < 2e-6 && (wlat - 30.6595).abs() < 2e-6);
    }

    #[test]
    fn batch_rejects_nan_with_position() {
        let mut lngs = [104.0, f64::NAN];
        let mut lats = [30.0, 30.0];
        let err = convert_in_place(&mut lngs, &mut lats, CoordSystem::Wgs84, CoordSystem::Gcj02).unwrap_err();
        assert!(err.to_string().contains("point #1"));
    }
}
