//! Exact energy over time windows of a uniformly sampled power trace.
//!
//! Windows are converted to "sample coordinates" `u = (meter_t - t0) * fs`, in which sample `i`
//! covers `[i, i + 1)`. Integrals are computed in sample units (W x samples) and divided by `fs`
//! once at the end. Only the samples inside a window are touched, so the cost is
//! O(window length + number of windows) and nothing proportional to the trace is allocated.

use crate::clock::ClockMap;
use crate::error::{check_finite, check_sample_rate, check_windows, EnergyError};
use crate::flags;
use crate::model::SignalModel;
use crate::sample::{PowerSeries, Sample};

/// Result for one window. Energy is over the covered part of the window only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    /// Energy over the covered part of the window, joules. NaN when `NO_SAMPLES` is set.
    pub energy_j: f64,
    /// `energy_j` divided by the covered duration, watts. NaN when `NO_SAMPLES` is set.
    pub mean_power_w: f64,
    /// Number of valid sample intervals overlapping the window by a positive length.
    pub samples: u64,
    /// Fraction (0..1) of the window's duration covered by valid trace.
    pub coverage: f64,
    /// Bitmask of `crate::flags`.
    pub flags: u32,
}

/// Running sums for one window, in sample units.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Accum {
    /// Integral of power over the covered part, W x samples.
    pub energy: f64,
    /// Covered length, samples.
    pub covered: f64,
    /// Valid samples overlapping the window.
    pub samples: u64,
    /// Invalid (NaN/inf) samples overlapping the window.
    pub invalid: u64,
    /// Samples at or above the saturation level overlapping the window.
    pub saturated: u64,
}

/// How samples are read: the signal model, and the saturation level at and above which a
/// sample is excluded like a NaN (`f64::INFINITY`: no level).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    pub model: SignalModel,
    pub saturation: f64,
}

impl Reading {
    pub fn new(model: SignalModel, saturation_w: Option<f64>) -> Result<Self, EnergyError> {
        if let Some(w) = saturation_w {
            check_finite("saturation_w", w)?;
        }
        Ok(Reading {
            model,
            saturation: saturation_w.unwrap_or(f64::INFINITY),
        })
    }

    /// Finite and below the saturation level.
    #[inline]
    pub fn valid(self, v: f64) -> bool {
        v.is_finite() && v < self.saturation
    }
}

/// The checks every window integration makes after its trace's own: the clock map, the
/// windows, then how samples are read. Kept in one place because their order decides which
/// error a caller sees.
pub(crate) fn check_window_args(
    clock: ClockMap,
    starts: &[f64],
    ends: &[f64],
    model: SignalModel,
    saturation_w: Option<f64>,
) -> Result<Reading, EnergyError> {
    clock.validate()?;
    check_windows(starts, ends)?;
    Reading::new(model, saturation_w)
}

/// Interior samples are summed in blocks so one NaN only sends its own block down the slow path.
const BLOCK: usize = 4096;

/// A validated uniform trace: `power[i]` covers `[t0 + i/fs, t0 + (i+1)/fs)` on the meter clock.
#[derive(Debug, Clone, Copy)]
pub struct UniformTrace<P: PowerSeries> {
    power: P,
    t0: f64,
    fs: f64,
}

impl<P: PowerSeries> UniformTrace<P> {
    pub fn new(power: P, t0: f64, fs: f64) -> Result<Self, EnergyError> {
        check_sample_rate(fs)?;
        check_finite("t0", t0)?;
        Ok(UniformTrace { power, t0, fs })
    }

    pub fn power(&self) -> P {
        self.power
    }

    pub fn t0(&self) -> f64 {
        self.t0
    }

    pub fn sample_rate_hz(&self) -> f64 {
        self.fs
    }

    /// Meter-clock time to sample coordinates.
    #[inline]
    pub(crate) fn sample_coord(&self, meter_t: f64) -> f64 {
        (meter_t - self.t0) * self.fs
    }

    /// Integrates over `[ua, ub]` in sample coordinates (`ua <= ub`, both finite).
    pub(crate) fn accumulate(&self, ua: f64, ub: f64, reading: Reading) -> (Accum, bool) {
        let n = self.power.len() as f64;
        let outside = ua < 0.0 || ub > n;
        let a = ua.max(0.0);
        let b = ub.min(n);
        let mut acc = Accum::default();
        if a < b {
            integrate_span(self.power, a, b, reading, &mut acc);
        }
        (acc, outside)
    }

    /// Stats for one window given on the agent clock.
    pub fn window(&self, start: f64, end: f64, clock: ClockMap, model: SignalModel) -> WindowStats {
        let reading = Reading {
            model,
            saturation: f64::INFINITY,
        };
        self.window_read(start, end, clock, reading)
    }

    fn window_read(&self, start: f64, end: f64, clock: ClockMap, reading: Reading) -> WindowStats {
        let ua = self.sample_coord(clock.to_meter(start));
        let ub = self.sample_coord(clock.to_meter(end));
        let (acc, outside) = self.accumulate(ua, ub, reading);
        finish(acc, ub - ua, outside, self.fs)
    }
}

/// Turns running sums into window stats. `length` is the window's length in sample units.
pub(crate) fn finish(acc: Accum, length: f64, outside: bool, fs: f64) -> WindowStats {
    let mut mask = 0;
    if outside {
        mask |= flags::PARTIAL_COVERAGE;
    }
    if acc.invalid > 0 {
        mask |= flags::NAN_SAMPLES | flags::PARTIAL_COVERAGE;
    }
    if acc.saturated > 0 {
        mask |= flags::SATURATED | flags::PARTIAL_COVERAGE;
    }
    if acc.covered <= 0.0 || acc.samples == 0 {
        return WindowStats {
            energy_j: f64::NAN,
            mean_power_w: f64::NAN,
            samples: acc.samples,
            coverage: 0.0,
            flags: mask | flags::NO_SAMPLES,
        };
    }
    // A fully covered window reports exactly 1 rather than a sum of pieces that rounds to 1-eps.
    let coverage = if mask & flags::PARTIAL_COVERAGE == 0 {
        1.0
    } else {
        (acc.covered / length).clamp(0.0, 1.0)
    };
    WindowStats {
        energy_j: acc.energy / fs,
        mean_power_w: acc.energy / acc.covered,
        samples: acc.samples,
        coverage,
        flags: mask,
    }
}

/// Integrates `power` over `[a, b]`, `0 <= a < b <= power.len()`, in sample coordinates.
pub(crate) fn integrate_span<P: PowerSeries>(
    power: P,
    a: f64,
    b: f64,
    reading: Reading,
    acc: &mut Accum,
) {
    let first_full = a.ceil() as usize; // first sample boundary at or after a
    let last_full = b.floor() as usize; // last sample boundary at or before b
    if first_full > last_full {
        // The whole window lies strictly inside one sample.
        partial_sample(power, a.floor() as usize, a, b, reading, acc);
        return;
    }
    if (first_full as f64) > a {
        partial_sample(power, first_full - 1, a, first_full as f64, reading, acc);
    }
    let mut k = first_full;
    while k < last_full {
        let m = (k + BLOCK).min(last_full);
        full_samples(power, k, m, reading, acc);
        k = m;
    }
    if b > last_full as f64 {
        partial_sample(power, last_full, last_full as f64, b, reading, acc);
    }
}

/// Value of a neighbour for the linear model: itself when valid, else `fallback` (the sample
/// is held flat towards the trace edge or an invalid sample).
#[inline]
fn neighbour<P: PowerSeries>(power: P, j: Option<usize>, fallback: f64, reading: Reading) -> f64 {
    match j.and_then(|j| power.get(j)) {
        Some(x) if reading.valid(x) => x,
        _ => fallback,
    }
}

/// Whole samples `k..m`. Fast path: one vectorised sum, valid when it comes out finite (and,
/// with a saturation level, the block's maximum is below it); else sample by sample.
#[inline]
fn full_samples<P: PowerSeries>(power: P, k: usize, m: usize, reading: Reading, acc: &mut Accum) {
    let sum = if reading.saturation == f64::INFINITY {
        power.sum(k, m)
    } else {
        let (sum, max) = power.sum_max(k, m);
        if max < reading.saturation {
            sum
        } else {
            f64::NAN
        }
    };
    if !sum.is_finite() {
        for j in k..m {
            partial_sample(power, j, j as f64, (j + 1) as f64, reading, acc);
        }
        return;
    }
    let count = (m - k) as u64;
    acc.samples += count;
    acc.covered += count as f64;
    match reading.model {
        SignalModel::Hold => acc.energy += sum,
        SignalModel::Linear => {
            // Sum over j of 3/4 x[j] + 1/8 (x[j-1] + x[j+1]) telescopes to the plain sum plus
            // corrections at the two ends of the run.
            let first = power.at(k);
            let last = power.at(m - 1);
            let prev = neighbour(power, k.checked_sub(1), first, reading);
            let next = neighbour(power, Some(m), last, reading);
            acc.energy += sum + 0.125 * (prev - first + next - last);
        }
    }
}

/// The part `[lo, hi]` of sample `i`'s interval `[i, i + 1]`, `lo < hi`.
#[inline]
fn partial_sample<P: PowerSeries>(
    power: P,
    i: usize,
    lo: f64,
    hi: f64,
    reading: Reading,
    acc: &mut Accum,
) {
    let v = power.at(i);
    if !v.is_finite() {
        acc.invalid += 1;
        return;
    }
    if v >= reading.saturation {
        acc.saturated += 1;
        return;
    }
    acc.samples += 1;
    acc.covered += hi - lo;
    match reading.model {
        SignalModel::Hold => acc.energy += v * (hi - lo),
        SignalModel::Linear => {
            let mid = i as f64 + 0.5;
            let prev = neighbour(power, i.checked_sub(1), v, reading);
            let next = neighbour(power, Some(i + 1), v, reading);
            // Left half: the line through (mid - 1, prev) and (mid, v); its integral over a
            // sub-interval is the length times the value at the sub-interval's centre.
            let (l_lo, l_hi) = (lo, hi.min(mid));
            if l_hi > l_lo {
                let c = 0.5 * (l_lo + l_hi);
                acc.energy += (l_hi - l_lo) * (v + (v - prev) * (c - mid));
            }
            // Right half: the line through (mid, v) and (mid + 1, next).
            let (r_lo, r_hi) = (lo.max(mid), hi);
            if r_hi > r_lo {
                let c = 0.5 * (r_lo + r_hi);
                acc.energy += (r_hi - r_lo) * (v + (next - v) * (c - mid));
            }
        }
    }
}

/// Energy and validity of each window `[starts[k], ends[k]]` (agent clock) over a uniform trace
/// whose sample `i` covers `[t0 + i/fs, t0 + (i+1)/fs)` on the meter clock.
///
/// Windows may be unsorted and may overlap. Invalid arguments are errors; windows outside the
/// trace or containing NaN samples are reported through `WindowStats::flags`. Samples at or
/// above `saturation_w` (when given) are excluded like NaN and flag `SATURATED`: an
/// over-range reading is a floor, not a value, and is never integrated.
#[allow(clippy::too_many_arguments)]
pub fn integrate_uniform<T: Sample>(
    power: &[T],
    t0: f64,
    fs: f64,
    starts: &[f64],
    ends: &[f64],
    clock: ClockMap,
    model: SignalModel,
    saturation_w: Option<f64>,
) -> Result<Vec<WindowStats>, EnergyError> {
    integrate_series(power, t0, fs, starts, ends, clock, model, saturation_w)
}

/// [`integrate_uniform`] over any [`PowerSeries`], e.g. [`crate::CurrentVoltage`]: a current
/// and a voltage channel multiplied per sample as they are read.
#[allow(clippy::too_many_arguments)]
pub fn integrate_series<P: PowerSeries>(
    power: P,
    t0: f64,
    fs: f64,
    starts: &[f64],
    ends: &[f64],
    clock: ClockMap,
    model: SignalModel,
    saturation_w: Option<f64>,
) -> Result<Vec<WindowStats>, EnergyError> {
    let trace = UniformTrace::new(power, t0, fs)?;
    let reading = check_window_args(clock, starts, ends, model, saturation_w)?;
    Ok(starts
        .iter()
        .zip(ends)
        .map(|(&s, &e)| trace.window_read(s, e, clock, reading))
        .collect())
}

/// Mean power over marked idle windows: total energy over total covered duration, watts.
///
/// Windows with no valid samples contribute nothing; NaN when no window has any valid sample
/// (no baseline is invalid, not zero — callers flag it). Saturated samples are excluded.
#[allow(clippy::too_many_arguments)]
pub fn idle_power<T: Sample>(
    power: &[T],
    t0: f64,
    fs: f64,
    starts: &[f64],
    ends: &[f64],
    clock: ClockMap,
    model: SignalModel,
    saturation_w: Option<f64>,
) -> Result<f64, EnergyError> {
    let trace = UniformTrace::new(power, t0, fs)?;
    let reading = check_window_args(clock, starts, ends, model, saturation_w)?;
    let mut energy = 0.0;
    let mut covered = 0.0;
    for (&s, &e) in starts.iter().zip(ends) {
        let ua = trace.sample_coord(clock.to_meter(s));
        let ub = trace.sample_coord(clock.to_meter(e));
        let (acc, _) = trace.accumulate(ua, ub, reading);
        energy += acc.energy;
        covered += acc.covered;
    }
    Ok(if covered > 0.0 {
        energy / covered
    } else {
        f64::NAN
    })
}
