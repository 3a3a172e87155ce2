//! Clock alignment from a known busy/idle pattern.
//!
//! The agent runs busy intervals at known agent-clock times; the meter sees power rise during
//! them. For a candidate offset `theta` (meter = agent + theta) the expected trace is
//! `a + b * occ_j(theta)`, where `occ_j` is the fraction of meter sample `j`'s interval covered
//! by busy time. We pick the `theta` that maximises the Pearson correlation between `occ(theta)`
//! and the trace: first over whole-sample lags within `±max_offset_s`, then by a golden-section
//! search within one sample of the best lag (the template is exact at fractional offsets, so
//! on a clean signal the peak is exactly at the true offset).
//!
//! Cost: one pass over the region `pattern ± max_offset_s` to build prefix sums, then
//! O(number of busy intervals) per candidate offset, independent of their length.
//! The pattern should not be periodic with a period below `2 * max_offset_s`, or the
//! correlation has several equal peaks.

use crate::error::{check_finite, check_sample_rate, check_windows, EnergyError};
use crate::sample::Sample;

/// Result of `align_offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// Estimated offset, seconds: `meter_t = agent_t + offset_s`.
    pub offset_s: f64,
    /// Pearson correlation between the trace and the busy template at `offset_s` (-1..1).
    pub correlation: f64,
    /// RMS, watts, of `trace - (a + b * template)` with `a`, `b` fitted by least squares.
    pub residual_w: f64,
}

/// Golden-section iterations: shrinks a two-sample bracket below 1e-9 samples.
const REFINE_ITERATIONS: usize = 48;

/// Prefix sums over the search region, indexed by local sample `0..=len`.
struct Region<'a, T: Sample> {
    power: &'a [T],
    /// First trace sample of the region.
    first: usize,
    /// Sample coordinate (meter clock, relative to the region start) of agent time 0 at
    /// offset 0: `u(agent_t, theta) = (agent_t + theta - t0) * fs - first`.
    t0: f64,
    fs: f64,
    mean: f64,
    valid: f64,
    /// Sum of squared deviations from the mean over valid samples.
    sxx: f64,
    /// `centred[j]` = sum of (x - mean) over valid samples `first..first + j`.
    centred: Vec<f64>,
    /// `count[j]` = number of valid samples in `first..first + j`.
    count: Vec<u64>,
}

/// Sums of the template against the region at one offset.
#[derive(Default)]
struct TemplateSums {
    occ: f64,
    occ_sq: f64,
    cross: f64,
}

impl<'a, T: Sample> Region<'a, T> {
    fn new(power: &'a [T], first: usize, last: usize, t0: f64, fs: f64) -> Self {
        let xs = &power[first..last];
        let (mut sum, mut valid) = (0.0, 0u64);
        for x in xs {
            let v = x.to_f64();
            if v.is_finite() {
                sum += v;
                valid += 1;
            }
        }
        let mean = if valid > 0 { sum / valid as f64 } else { 0.0 };
        let mut centred = Vec::with_capacity(xs.len() + 1);
        let mut count = Vec::with_capacity(xs.len() + 1);
        let (mut c, mut k, mut sxx) = (0.0, 0u64, 0.0);
        centred.push(0.0);
        count.push(0);
        for x in xs {
            let v = x.to_f64();
            if v.is_finite() {
                let d = v - mean;
                c += d;
                sxx += d * d;
                k += 1;
            }
            centred.push(c);
            count.push(k);
        }
        Region {
            power,
            first,
            t0,
            fs,
            mean,
            valid: valid as f64,
            sxx,
            centred,
            count,
        }
    }

    fn len(&self) -> usize {
        self.count.len() - 1
    }

    fn local_u(&self, meter_t: f64) -> f64 {
        (meter_t - self.t0) * self.fs - self.first as f64
    }

    fn add_partial(&self, sums: &mut TemplateSums, j: usize, occ: f64) {
        let v = self.power[self.first + j].to_f64();
        if v.is_finite() {
            sums.occ += occ;
            sums.occ_sq += occ * occ;
            sums.cross += occ * (v - self.mean);
        }
    }

    fn add_full(&self, sums: &mut TemplateSums, p: usize, q: usize) {
        if q > p {
            let k = (self.count[q] - self.count[p]) as f64;
            sums.occ += k;
            sums.occ_sq += k;
            sums.cross += self.centred[q] - self.centred[p];
        }
    }

    /// Template sums for merged, sorted busy intervals shifted by `theta`.
    fn sums(&self, busy: &[(f64, f64)], theta: f64) -> TemplateSums {
        let len = self.len() as f64;
        let mut sums = TemplateSums::default();
        // Two intervals can share a sample (a gap shorter than one sample); their partial
        // occupancies must be added before squaring, so the last partial is held back.
        let mut pending: Option<(usize, f64)> = None;
        let mut partial = |sums: &mut TemplateSums, j: usize, occ: f64| match pending {
            Some((pj, po)) if pj == j => pending = Some((j, po + occ)),
            Some((pj, po)) => {
                self.add_partial(sums, pj, po);
                pending = Some((j, occ));
            }
            None => pending = Some((j, occ)),
        };
        for &(s, e) in busy {
            let us = self.local_u(s + theta).clamp(0.0, len);
            let ue = self.local_u(e + theta).clamp(0.0, len);
            if ue <= us {
                continue;
            }
            let i = us.floor() as usize;
            let j = ue.floor() as usize;
            if i == j {
                partial(&mut sums, i, ue - us);
                continue;
            }
            let full_from = if us > i as f64 {
                partial(&mut sums, i, (i + 1) as f64 - us);
                i + 1
            } else {
                i
            };
            self.add_full(&mut sums, full_from, j);
            if ue > j as f64 {
                partial(&mut sums, j, ue - j as f64);
            }
        }
        if let Some((pj, po)) = pending {
            self.add_partial(&mut sums, pj, po);
        }
        sums
    }

    /// Pearson correlation and residual RMS at `theta`; correlation is NaN without contrast.
    fn score(&self, busy: &[(f64, f64)], theta: f64) -> (f64, f64) {
        let s = self.sums(busy, theta);
        let soo = s.occ_sq - s.occ * s.occ / self.valid;
        if soo.is_nan() || soo <= 1e-12 * self.valid || self.sxx <= 0.0 {
            return (f64::NAN, (self.sxx / self.valid).sqrt());
        }
        let r = (s.cross / (self.sxx * soo).sqrt()).clamp(-1.0, 1.0);
        let residual = (self.sxx * (1.0 - r * r) / self.valid).max(0.0).sqrt();
        (r, residual)
    }
}

/// Sorts busy intervals and merges the ones that overlap or touch; drops empty ones.
fn merge_intervals(starts: &[f64], ends: &[f64]) -> Vec<(f64, f64)> {
    let mut spans: Vec<(f64, f64)> = starts
        .iter()
        .zip(ends)
        .map(|(&s, &e)| (s, e))
        .filter(|(s, e)| e > s)
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Finds the offset `theta` in `[-max_offset_s, max_offset_s]` (meter = agent + theta) that best
/// aligns the busy intervals (agent clock) with the trace (meter clock: sample `i` covers
/// `[t0 + i/fs, t0 + (i+1)/fs)`).
pub fn align_offset<T: Sample>(
    power: &[T],
    t0: f64,
    fs: f64,
    busy_starts: &[f64],
    busy_ends: &[f64],
    max_offset_s: f64,
) -> Result<Alignment, EnergyError> {
    check_sample_rate(fs)?;
    check_finite("t0", t0)?;
    check_finite("max_offset_s", max_offset_s)?;
    if max_offset_s < 0.0 {
        return Err(EnergyError::InvalidParameter {
            name: "max_offset_s",
            value: max_offset_s,
            reason: "must be >= 0",
        });
    }
    check_windows(busy_starts, busy_ends)?;
    let busy = merge_intervals(busy_starts, busy_ends);
    let (Some(&(pattern_start, _)), Some(&(_, pattern_end))) = (busy.first(), busy.last()) else {
        return Err(EnergyError::NoData(
            "align_offset: no busy interval with a positive duration".to_string(),
        ));
    };

    // Region: every sample that the pattern can touch at any candidate offset.
    let n = power.len() as f64;
    let u = |t: f64| (t - t0) * fs;
    let first = u(pattern_start - max_offset_s).floor().clamp(0.0, n) as usize;
    let last = u(pattern_end + max_offset_s).ceil().clamp(0.0, n) as usize;
    if last <= first + 1 {
        return Err(EnergyError::NoData(format!(
            "align_offset: the busy pattern [{pattern_start}, {pattern_end}] s ± {max_offset_s} s \
             does not overlap the trace [{t0}, {}] s",
            t0 + n / fs
        )));
    }
    let region = Region::new(power, first, last, t0, fs);
    if region.valid < 2.0 {
        return Err(EnergyError::NoData(
            "align_offset: fewer than 2 valid samples under the busy pattern".to_string(),
        ));
    }

    // Coarse: whole-sample lags.
    let max_lag = (max_offset_s * fs + 1e-9).floor() as i64;
    let mut best: Option<(f64, f64, f64)> = None; // (theta, r, residual)
    for lag in -max_lag..=max_lag {
        let theta = lag as f64 / fs;
        let (r, res) = region.score(&busy, theta);
        if r.is_finite() && best.is_none_or(|(_, br, _)| r > br) {
            best = Some((theta, r, res));
        }
    }
    let Some((mut theta, mut r, mut residual)) = best else {
        return Err(EnergyError::NoData(
            "align_offset: the busy pattern has no contrast within the trace (the template is \
             constant at every candidate offset)"
                .to_string(),
        ));
    };

    // Fine: golden-section search for the maximum within one sample of the best lag.
    let lo0 = (theta - 1.0 / fs).max(-max_offset_s);
    let hi0 = (theta + 1.0 / fs).min(max_offset_s);
    if hi0 > lo0 {
        let score = |t: f64| {
            let (r, _) = region.score(&busy, t);
            if r.is_finite() {
                r
            } else {
                f64::NEG_INFINITY
            }
        };
        let g = 0.5 * (5f64.sqrt() - 1.0);
        let (mut lo, mut hi) = (lo0, hi0);
        let mut x1 = hi - g * (hi - lo);
        let mut x2 = lo + g * (hi - lo);
        let (mut f1, mut f2) = (score(x1), score(x2));
        for _ in 0..REFINE_ITERATIONS {
            if f1 < f2 {
                lo = x1;
                x1 = x2;
                f1 = f2;
                x2 = lo + g * (hi - lo);
                f2 = score(x2);
            } else {
                hi = x2;
                x2 = x1;
                f2 = f1;
                x1 = hi - g * (hi - lo);
                f1 = score(x1);
            }
        }
        let candidate = 0.5 * (lo + hi);
        let (rc, resc) = region.score(&busy, candidate);
        if rc.is_finite() && rc >= r {
            theta = candidate;
            r = rc;
            residual = resc;
        }
    }
    Ok(Alignment {
        offset_s: theta,
        correlation: r,
        residual_w: residual,
    })
}

/// Like [`align_offset`], searching `[centre_s - max_offset_s, centre_s + max_offset_s]`.
pub fn align_offset_around<T: Sample>(
    power: &[T],
    t0: f64,
    fs: f64,
    busy_starts: &[f64],
    busy_ends: &[f64],
    centre_s: f64,
    max_offset_s: f64,
) -> Result<Alignment, EnergyError> {
    check_finite("centre_s", centre_s)?;
    // Searching around a centre is searching around 0 with the trace moved by -centre.
    let found = align_offset(
        power,
        t0 - centre_s,
        fs,
        busy_starts,
        busy_ends,
        max_offset_s,
    )?;
    Ok(Alignment {
        offset_s: found.offset_s + centre_s,
        ..found
    })
}

/// Offset and drift from two busy patterns, one early and one late in a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockFit {
    /// `meter_t = agent_t * (1 + drift_ppm * 1e-6) + offset_s`.
    pub offset_s: f64,
    pub drift_ppm: f64,
    /// Alignment of each anchor, and the agent time (centre of its busy pattern) it holds at.
    pub anchors: [(f64, Alignment); 2],
}

/// Centre of a busy pattern (agent clock): halfway between its earliest start and latest end.
pub fn pattern_centre(busy_starts: &[f64], busy_ends: &[f64]) -> f64 {
    let lo = busy_starts.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = busy_ends.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    0.5 * (lo + hi)
}

/// Fits offset and drift from two anchors: busy intervals starting before `split_at` (agent
/// clock) form the first pattern, the rest the second. The first is searched within
/// `±max_offset_s`, the second within `±max_offset_s` of the first's offset.
pub fn align_clock<T: Sample>(
    power: &[T],
    t0: f64,
    fs: f64,
    busy_starts: &[f64],
    busy_ends: &[f64],
    split_at: f64,
    max_offset_s: f64,
) -> Result<ClockFit, EnergyError> {
    check_windows(busy_starts, busy_ends)?;
    check_finite("split_at", split_at)?;
    let mut groups: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    for (&s, &e) in busy_starts.iter().zip(busy_ends) {
        let g = &mut groups[usize::from(s >= split_at)];
        g.0.push(s);
        g.1.push(e);
    }
    for (k, g) in groups.iter().enumerate() {
        if g.0.is_empty() {
            let side = if k == 0 { "before" } else { "at or after" };
            return Err(EnergyError::NoData(format!(
                "align_clock: no busy interval starts {side} split_at ({split_at})"
            )));
        }
    }
    let centre = |g: &(Vec<f64>, Vec<f64>)| pattern_centre(&g.0, &g.1);
    let (c1, c2) = (centre(&groups[0]), centre(&groups[1]));
    let first = align_offset(power, t0, fs, &groups[0].0, &groups[0].1, max_offset_s)?;
    let second = align_offset_around(
        power,
        t0,
        fs,
        &groups[1].0,
        &groups[1].1,
        first.offset_s,
        max_offset_s,
    )?;
    if c2 <= c1 {
        return Err(EnergyError::NoData(
            "align_clock: the two busy patterns have the same centre; drift is undefined"
                .to_string(),
        ));
    }
    // meter = agent + theta(agent), theta linear through (c1, theta1) and (c2, theta2).
    let slope = (second.offset_s - first.offset_s) / (c2 - c1);
    Ok(ClockFit {
        offset_s: first.offset_s - slope * c1,
        drift_ppm: slope * 1e6,
        anchors: [(c1, first), (c2, second)],
    })
}

#[cfg(test)]
mod tests {
    use super::merge_intervals;

    #[test]
    fn merges_overlapping_and_touching_and_drops_empty() {
        let m = merge_intervals(&[3.0, 0.0, 1.0, 5.0, 7.0], &[4.0, 1.0, 2.0, 6.0, 7.0]);
        assert_eq!(m, vec![(0.0, 2.0), (3.0, 4.0), (5.0, 6.0)]);
    }
}
