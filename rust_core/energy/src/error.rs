//! The one error type of the crate. Messages name the offending argument and, for windows,
//! its index, because callers pass thousands of windows and need to find the bad one.

use std::fmt;

/// Invalid input to an energy computation. Never produced for "bad data" inside a valid trace
/// (NaN samples, windows outside the trace): those are reported per window through flags.
#[derive(Debug, Clone, PartialEq)]
pub enum EnergyError {
    /// The sample rate is zero, negative or not finite.
    InvalidSampleRate(f64),
    /// A scalar parameter (t0, offset_s, drift_ppm, max_offset_s, ...) is out of range.
    InvalidParameter {
        name: &'static str,
        value: f64,
        reason: &'static str,
    },
    /// `starts` and `ends` differ in length.
    LengthMismatch { starts: usize, ends: usize },
    /// A window bound is NaN or infinite.
    NonFiniteBound {
        index: usize,
        which: &'static str,
        value: f64,
    },
    /// A window ends before it starts.
    EndBeforeStart { index: usize, start: f64, end: f64 },
    /// The signal model name is not one of "hold", "linear".
    UnknownModel(String),
    /// The computation cannot produce a meaningful answer from this input.
    NoData(String),
}

impl fmt::Display for EnergyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnergyError::InvalidSampleRate(fs) => {
                write!(f, "sample rate must be finite and > 0, got {fs:?}")
            }
            EnergyError::InvalidParameter {
                name,
                value,
                reason,
            } => {
                write!(f, "{name} ({value:?}) {reason}")
            }
            EnergyError::LengthMismatch { starts, ends } => write!(
                f,
                "starts and ends must have the same length, got {starts} starts and {ends} ends"
            ),
            EnergyError::NonFiniteBound {
                index,
                which,
                value,
            } => {
                write!(f, "window {index}: {which} ({value:?}) is not finite")
            }
            EnergyError::EndBeforeStart { index, start, end } => {
                write!(
                    f,
                    "window {index}: end ({end:?}) is before start ({start:?})"
                )
            }
            EnergyError::UnknownModel(name) => {
                write!(
                    f,
                    "unknown signal model {name:?} (expected \"hold\" or \"linear\")"
                )
            }
            EnergyError::NoData(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for EnergyError {}

/// Checks a sample rate.
pub(crate) fn check_sample_rate(fs: f64) -> Result<(), EnergyError> {
    if fs.is_finite() && fs > 0.0 {
        Ok(())
    } else {
        Err(EnergyError::InvalidSampleRate(fs))
    }
}

/// Checks that a scalar is finite.
pub(crate) fn check_finite(name: &'static str, value: f64) -> Result<(), EnergyError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(EnergyError::InvalidParameter {
            name,
            value,
            reason: "must be finite",
        })
    }
}

/// Checks a list of `[start, end]` windows: equal lengths, finite bounds, `end >= start`.
pub(crate) fn check_windows(starts: &[f64], ends: &[f64]) -> Result<(), EnergyError> {
    if starts.len() != ends.len() {
        return Err(EnergyError::LengthMismatch {
            starts: starts.len(),
            ends: ends.len(),
        });
    }
    for (index, (&start, &end)) in starts.iter().zip(ends).enumerate() {
        if !start.is_finite() {
            return Err(EnergyError::NonFiniteBound {
                index,
                which: "start",
                value: start,
            });
        }
        if !end.is_finite() {
            return Err(EnergyError::NonFiniteBound {
                index,
                which: "end",
                value: end,
            });
        }
        if end < start {
            return Err(EnergyError::EndBeforeStart { index, start, end });
        }
    }
    Ok(())
}
