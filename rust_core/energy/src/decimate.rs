//! Min/max/mean decimation for plotting long traces: each block of `factor` samples becomes one
//! point, and the min/max envelope keeps short spikes visible that plain subsampling would hide.

use crate::error::EnergyError;
use crate::sample::Sample;

/// Per-block statistics; NaN/inf samples are ignored (all NaN when a block has none valid).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decimated {
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    pub mean: Vec<f64>,
}

/// Splits `power` into blocks of `factor` samples (the last one may be shorter).
pub fn decimate_minmax<T: Sample>(power: &[T], factor: usize) -> Result<Decimated, EnergyError> {
    if factor == 0 {
        return Err(EnergyError::NoData(
            "decimate_minmax: factor must be >= 1, got 0".to_string(),
        ));
    }
    let blocks = power.len().div_ceil(factor);
    let mut out = Decimated {
        min: Vec::with_capacity(blocks),
        max: Vec::with_capacity(blocks),
        mean: Vec::with_capacity(blocks),
    };
    for block in power.chunks(factor) {
        let (mut lo, mut hi, mut sum, mut count) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0u64);
        for v in block {
            let v = v.to_f64();
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
                sum += v;
                count += 1;
            }
        }
        if count == 0 {
            out.min.push(f64::NAN);
            out.max.push(f64::NAN);
            out.mean.push(f64::NAN);
        } else {
            out.min.push(lo);
            out.max.push(hi);
            out.mean.push(sum / count as f64);
        }
    }
    Ok(out)
}
