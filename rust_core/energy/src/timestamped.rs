//! Energy over windows of a trace with explicit timestamps (meters that sample irregularly,
//! drop samples, or whose clock steps).
//!
//! Convention: sample `i` is the point `(t[i], power[i])` on the meter clock, and the trace
//! covers `[t[0], t[n-1]]`. `Hold`: `power[i]` holds over `[t[i], t[i+1])`. `Linear`: straight
//! lines between consecutive points. An interval longer than `max_gap_s` is a gap: excluded and
//! flagged `GAP`. Timestamps that do not increase (or are not finite) are dropped, keeping the
//! strictly increasing envelope; windows containing the spot are flagged `NON_MONOTONIC`. A NaN
//! power value excludes its interval (hold) or both intervals touching it (linear); so does a
//! value at or above the saturation level, flagged `SATURATED`.

use crate::clock::ClockMap;
use crate::error::EnergyError;
use crate::flags;
use crate::integrate::{check_window_args, finish, Accum, Reading, WindowStats};
use crate::model::SignalModel;
use crate::sample::Sample;

/// Whole-trace quality, computed in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TraceQuality {
    /// Number of samples given.
    pub samples: u64,
    /// Samples with a NaN or infinite power value.
    pub nan_samples: u64,
    /// Samples at or above the saturation level (0 without one).
    pub saturated_samples: u64,
    /// Samples dropped because their timestamp was not finite or did not increase.
    pub non_monotonic: u64,
    /// Intervals longer than `max_gap_s` (0 when gap detection is off).
    pub gaps: u64,
    /// Total duration of those gaps, seconds.
    pub gap_s: f64,
    /// Longest interval between kept consecutive timestamps, seconds (NaN with < 2 samples).
    pub max_interval_s: f64,
    /// Mean interval between kept timestamps, seconds (NaN with < 2 samples).
    pub mean_interval_s: f64,
    /// First and last kept timestamps (meter clock), seconds; NaN when none.
    pub start_s: f64,
    pub end_s: f64,
}

/// Index of kept samples: identity when the timestamps are clean, else the envelope.
struct Kept<'a, T: Sample> {
    t: &'a [f64],
    x: &'a [T],
    envelope: Option<Vec<usize>>,
    /// Meter times (sorted) where samples were dropped.
    violations: Vec<f64>,
}

impl<'a, T: Sample> Kept<'a, T> {
    fn len(&self) -> usize {
        self.envelope.as_ref().map_or(self.t.len(), Vec::len)
    }

    #[inline]
    fn index(&self, k: usize) -> usize {
        self.envelope.as_ref().map_or(k, |e| e[k])
    }

    #[inline]
    fn time(&self, k: usize) -> f64 {
        self.t[self.index(k)]
    }

    #[inline]
    fn value(&self, k: usize) -> f64 {
        self.x[self.index(k)].to_f64()
    }

    /// Number of kept samples with time <= `t`.
    fn upper_bound(&self, t: f64) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.time(mid) <= t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Builds the kept-sample index and the quality summary.
fn scan<'a, T: Sample>(
    t: &'a [f64],
    x: &'a [T],
    max_gap_s: Option<f64>,
    saturation: f64,
) -> (Kept<'a, T>, TraceQuality) {
    let mut q = TraceQuality {
        samples: t.len() as u64,
        ..Default::default()
    };
    q.nan_samples = x.iter().filter(|v| !v.to_f64().is_finite()).count() as u64;
    q.saturated_samples = x
        .iter()
        .filter(|v| v.to_f64().is_finite() && v.to_f64() >= saturation)
        .count() as u64;
    let clean = t.iter().all(|v| v.is_finite()) && t.windows(2).all(|w| w[1] > w[0]);
    let mut kept = Kept {
        t,
        x,
        envelope: None,
        violations: Vec::new(),
    };
    if !clean {
        let mut envelope = Vec::new();
        let mut last = f64::NEG_INFINITY;
        for (i, &ti) in t.iter().enumerate() {
            if ti.is_finite() && ti > last {
                envelope.push(i);
                last = ti;
            } else {
                q.non_monotonic += 1;
                // Before the first kept sample nothing can be flagged; the spot is "at" the
                // latest kept time otherwise.
                if last.is_finite() {
                    kept.violations.push(last);
                }
            }
        }
        kept.envelope = Some(envelope);
    }
    let n = kept.len();
    if n > 0 {
        q.start_s = kept.time(0);
        q.end_s = kept.time(n - 1);
    } else {
        q.start_s = f64::NAN;
        q.end_s = f64::NAN;
    }
    if n >= 2 {
        q.mean_interval_s = (q.end_s - q.start_s) / (n - 1) as f64;
        let mut max_dt: f64 = 0.0;
        for k in 0..n - 1 {
            let dt = kept.time(k + 1) - kept.time(k);
            max_dt = max_dt.max(dt);
            if max_gap_s.is_some_and(|g| dt > g) {
                q.gaps += 1;
                q.gap_s += dt;
            }
        }
        q.max_interval_s = max_dt;
    } else {
        q.mean_interval_s = f64::NAN;
        q.max_interval_s = f64::NAN;
    }
    (kept, q)
}

/// Integrates one window `[a, b]` (meter clock, seconds).
fn window<T: Sample>(
    kept: &Kept<'_, T>,
    a: f64,
    b: f64,
    max_gap_s: Option<f64>,
    reading: Reading,
) -> WindowStats {
    let model = reading.model;
    let n = kept.len();
    let mut acc = Accum::default();
    let mut mask = 0;
    let outside = n == 0 || a < kept.time(0) || b > kept.time(n - 1);
    if n >= 2 && b > a {
        // First interval that can overlap: the one starting at or before a.
        let mut k = kept.upper_bound(a).saturating_sub(1);
        while k + 1 < n && kept.time(k) < b {
            let (tk, tn) = (kept.time(k), kept.time(k + 1));
            let (lo, hi) = (a.max(tk), b.min(tn));
            if hi > lo {
                let dt = tn - tk;
                let (vk, vn) = (kept.value(k), kept.value(k + 1));
                let linear = model == SignalModel::Linear;
                if max_gap_s.is_some_and(|g| dt > g) {
                    mask |= flags::GAP;
                } else if !vk.is_finite() || (linear && !vn.is_finite()) {
                    acc.invalid += 1;
                } else if vk >= reading.saturation || (linear && vn >= reading.saturation) {
                    acc.saturated += 1;
                } else {
                    acc.samples += 1;
                    // Covered time in seconds here; `finish` only needs consistent units.
                    acc.covered += hi - lo;
                    acc.energy += (hi - lo)
                        * match model {
                            SignalModel::Hold => vk,
                            SignalModel::Linear => {
                                let c = 0.5 * (lo + hi);
                                vk + (vn - vk) * (c - tk) / dt
                            }
                        };
                }
            }
            k += 1;
        }
    }
    // Violations are sorted: any inside [a, b]?
    let first = kept.violations.partition_point(|&v| v < a);
    if kept.violations.get(first).is_some_and(|&v| v <= b) {
        mask |= flags::NON_MONOTONIC;
    }
    let mut stats = finish(acc, b - a, outside, 1.0);
    if mask & flags::GAP != 0 {
        mask |= flags::PARTIAL_COVERAGE;
        if stats.flags & flags::NO_SAMPLES == 0 {
            stats.coverage = (acc.covered / (b - a)).clamp(0.0, 1.0);
        }
    }
    stats.flags |= mask;
    stats
}

/// Energy and validity of each window (agent clock) over a timestamped trace (meter clock).
/// `max_gap_s = None` turns gap detection off; `saturation_w = None`: no saturation level.
/// See the module docs for the conventions.
#[allow(clippy::too_many_arguments)]
pub fn integrate_timestamped<T: Sample>(
    t: &[f64],
    power: &[T],
    starts: &[f64],
    ends: &[f64],
    clock: ClockMap,
    model: SignalModel,
    max_gap_s: Option<f64>,
    saturation_w: Option<f64>,
) -> Result<(Vec<WindowStats>, TraceQuality), EnergyError> {
    if t.len() != power.len() {
        return Err(EnergyError::NoData(format!(
            "timestamps and power must have the same length, got {} timestamps and {} samples",
            t.len(),
            power.len()
        )));
    }
    if let Some(g) = max_gap_s {
        if !(g.is_finite() && g > 0.0) {
            return Err(EnergyError::InvalidParameter {
                name: "max_gap_s",
                value: g,
                reason: "must be finite and > 0",
            });
        }
    }
    let reading = check_window_args(clock, starts, ends, model, saturation_w)?;
    let (kept, quality) = scan(t, power, max_gap_s, reading.saturation);
    let stats = starts
        .iter()
        .zip(ends)
        .map(|(&s, &e)| {
            window(
                &kept,
                clock.to_meter(s),
                clock.to_meter(e),
                max_gap_s,
                reading,
            )
        })
        .collect();
    Ok((stats, quality))
}
