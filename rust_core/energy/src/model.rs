//! How power behaves between samples.

use std::str::FromStr;

use crate::error::EnergyError;

/// Sample `i` of a uniform trace represents `[t0 + i/fs, t0 + (i+1)/fs)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignalModel {
    /// Piecewise constant: power equals sample `i` over its whole interval (an integrating
    /// meter reporting the mean power of each interval).
    #[default]
    Hold,
    /// The value of sample `i` sits at its interval's midpoint; power is linear between
    /// midpoints and flat before the first and after the last midpoint. Invalid (NaN) samples
    /// split the trace: their neighbours are held flat up to the excluded interval.
    Linear,
}

impl SignalModel {
    pub fn name(self) -> &'static str {
        match self {
            SignalModel::Hold => "hold",
            SignalModel::Linear => "linear",
        }
    }
}

impl FromStr for SignalModel {
    type Err = EnergyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hold" => Ok(SignalModel::Hold),
            "linear" => Ok(SignalModel::Linear),
            other => Err(EnergyError::UnknownModel(other.to_string())),
        }
    }
}
