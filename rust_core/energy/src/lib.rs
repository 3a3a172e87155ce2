//! Energy integration and clock alignment for power traces from edge-device meters.
//!
//! Pure Rust, no Python: the `joulefarm._core` extension (crate `joulefarm-python`) is a thin
//! binding over this crate.
//!
//! Conventions (shared with the Python side):
//! - times are f64 seconds; workload windows are on the *agent* clock and are mapped to the
//!   *meter* clock with [`ClockMap`]: `meter_t = agent_t * (1 + drift_ppm * 1e-6) + offset_s`;
//! - sample `i` of a uniform trace represents `[t0 + i/fs, t0 + (i+1)/fs)` on the meter clock;
//! - power is in watts and energy in joules; sums are accumulated in f64 whatever the sample type.

pub mod align;
pub mod clock;
pub mod decimate;
pub mod error;
pub mod flags;
pub mod fold;
pub mod integrate;
pub mod model;
pub mod quantile;
pub mod sample;
pub mod streaming;
pub mod timestamped;

pub use align::{
    align_clock, align_offset, align_offset_around, pattern_centre, Alignment, ClockFit,
};
pub use clock::ClockMap;
pub use decimate::{decimate_minmax, Decimated};
pub use error::EnergyError;
pub use fold::{fold_layers, FoldOptions, FoldResult, LayerFold, PowerEstimate};
pub use integrate::{idle_power, integrate_series, integrate_uniform, UniformTrace, WindowStats};
pub use model::SignalModel;
pub use sample::{CurrentVoltage, PowerSeries, Sample};
pub use streaming::StreamingIntegrator;
pub use timestamped::{integrate_timestamped, TraceQuality};
