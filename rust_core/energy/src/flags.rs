//! Per-window validity flags (a bitmask). Results carry flags next to the numbers rather than
//! failing the whole call, so one bad window does not hide thousands of good ones.

/// The window does not overlap the trace at all, has zero duration, or has no valid samples.
/// `energy_j` and `mean_power_w` are NaN: a window with no samples is invalid, not zero.
pub const NO_SAMPLES: u32 = 1;
/// Part of the window is not covered by valid trace (it extends beyond the trace, or
/// samples were excluded); energy is over the covered part only — see `coverage`.
pub const PARTIAL_COVERAGE: u32 = 2;
/// NaN or infinite samples fell in the window; they were excluded, never integrated.
pub const NAN_SAMPLES: u32 = 4;
/// (Timestamped traces) a gap between consecutive samples exceeded the allowed maximum.
pub const GAP: u32 = 8;
/// (Timestamped traces) timestamps in the window were not strictly increasing.
pub const NON_MONOTONIC: u32 = 16;
/// Reserved: the meter reported saturation (over-range) inside the window.
pub const SATURATED: u32 = 32;
/// (Folding) the unknown cannot be separated from others: its column of the least-squares
/// system is (nearly) a combination of theirs, e.g. two layers whose windows always coincide.
/// Its estimate is NaN; so is every estimate involved in the same dependency.
pub const UNIDENTIFIABLE: u32 = 64;

/// Every flag with its snake_case name, in bit order.
pub const ALL: [(u32, &str); 7] = [
    (NO_SAMPLES, "no_samples"),
    (PARTIAL_COVERAGE, "partial_coverage"),
    (NAN_SAMPLES, "nan_samples"),
    (GAP, "gap"),
    (NON_MONOTONIC, "non_monotonic"),
    (SATURATED, "saturated"),
    (UNIDENTIFIABLE, "unidentifiable"),
];

/// Names of the flags set in `mask`, in bit order.
pub fn names(mask: u32) -> Vec<&'static str> {
    ALL.iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|&(_, name)| name)
        .collect()
}
