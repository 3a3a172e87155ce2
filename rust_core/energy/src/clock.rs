//! Mapping from the agent clock (where workload markers are taken) to the meter clock (where
//! the power trace is timestamped).

use crate::error::{check_finite, EnergyError};

/// `meter_t = agent_t * (1 + drift_ppm * 1e-6) + offset_s`.
///
/// `offset_s` is in seconds; `drift_ppm` is the meter clock's rate error relative to the agent
/// clock in parts per million (positive: the meter clock runs fast).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClockMap {
    pub offset_s: f64,
    pub drift_ppm: f64,
}

impl ClockMap {
    /// The identity map (both clocks agree).
    pub const IDENTITY: ClockMap = ClockMap {
        offset_s: 0.0,
        drift_ppm: 0.0,
    };

    pub fn new(offset_s: f64, drift_ppm: f64) -> Self {
        ClockMap {
            offset_s,
            drift_ppm,
        }
    }

    /// Meter seconds per agent second.
    #[inline]
    pub fn rate(&self) -> f64 {
        1.0 + self.drift_ppm * 1e-6
    }

    /// Converts an agent-clock time to the meter clock.
    #[inline]
    pub fn to_meter(&self, agent_t: f64) -> f64 {
        agent_t * self.rate() + self.offset_s
    }

    /// Converts a meter-clock time to the agent clock.
    #[inline]
    pub fn to_agent(&self, meter_t: f64) -> f64 {
        (meter_t - self.offset_s) / self.rate()
    }

    /// Rejects maps that are not finite or would reverse or stop time.
    pub fn validate(&self) -> Result<(), EnergyError> {
        check_finite("offset_s", self.offset_s)?;
        check_finite("drift_ppm", self.drift_ppm)?;
        if self.rate() <= 0.0 {
            return Err(EnergyError::InvalidParameter {
                name: "drift_ppm",
                value: self.drift_ppm,
                reason: "must be > -1e6 (the meter clock would stop or run backwards)",
            });
        }
        Ok(())
    }
}
