//! Equivalent-time folding: the mean power of each layer when layers are shorter than the
//! sample period.
//!
//! On-board sensors sample at 100 Hz - 1 kHz while layers last 20-600 us, so no sample isolates
//! a layer. But a whole-model inference repeated many times falls at random phases of the sample
//! clock, and every sample is a known mixture of layers. In sample coordinates (sample `j`
//! covers `[j, j + 1)` and its value `y_j` is the mean power over it: an integrating meter):
//!
//! ```text
//! y_j = sum_k p_k * O_jk + p_gap * U_j
//! ```
//!
//! `O_jk` is the fraction of sample `j` covered by windows of layer `k`, `U_j` the fraction
//! covered by no window, `p_k` the mean power of layer `k` and `p_gap` the power between
//! windows (idle and between-layer overhead): fitted as one more unknown, or given. Least squares
//! over the samples recovers `p`. The normal equations are accumulated in one sweep over the
//! samples and the windows sorted by start, so memory is O(K^2) for K unknowns whatever the
//! trace length; a second sweep computes the exact residual for the standard errors.
//!
//! Only samples overlapping at least one window give an equation. Invalid samples (NaN/inf)
//! are skipped and flag `NAN_SAMPLES` on the layers they overlap; samples at or above the
//! saturation level likewise, flagging `SATURATED`. Unknowns that cannot be
//! separated (a layer never overlapping a valid sample, or layers whose windows always
//! coincide) are flagged and reported as NaN rather than given arbitrary values: see
//! [`solve_normal`].

use crate::clock::ClockMap;
use crate::error::{check_finite, check_sample_rate, check_windows, EnergyError};
use crate::flags;
use crate::quantile::student_t_two_sided;
use crate::sample::Sample;

/// Dense normal equations: beyond this many unknowns they would need too much memory.
pub const MAX_UNKNOWNS: usize = 2048;

/// A scaled pivot (the share of an unknown's column not explained by the columns already
/// chosen) at or below this means the column depends on them: a variance inflation >= 1e10.
const RANK_TOL: f64 = 1e-10;

/// A coefficient of a null vector above this (relative to its largest) marks an unknown as part
/// of the dependency.
const DEPENDENCY_TOL: f64 = 1e-7;

/// Uncovered fractions below this (1 ps at 1 kHz) are rounding noise of `1 - covered`.
const UNCOVERED_SNAP: f64 = 1e-9;

/// Options of [`fold_layers`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FoldOptions {
    /// Maps the windows' agent clock to the trace's meter clock.
    pub clock: ClockMap,
    /// Known power between windows, watts; `None` fits it as one more unknown.
    pub gap_power_w: Option<f64>,
    /// Number of layers; `None`: one more than the largest layer id.
    pub layers: Option<usize>,
    /// Level of the confidence intervals, in (0, 1).
    pub confidence: f64,
    /// Samples at or above this are excluded (the meter's over-range reading); `None`: none.
    pub saturation_w: Option<f64>,
}

impl Default for FoldOptions {
    fn default() -> Self {
        FoldOptions {
            clock: ClockMap::IDENTITY,
            gap_power_w: None,
            layers: None,
            confidence: 0.95,
            saturation_w: None,
        }
    }
}

/// A fitted mean power with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerEstimate {
    /// Mean power, watts. NaN when the unknown is not identifiable (see `flags`).
    pub power_w: f64,
    /// Standard error of `power_w`, watts: residual variance x diag((A^T A)^-1). NaN without
    /// residual degrees of freedom.
    pub power_se_w: f64,
    /// Two-sided confidence interval of `power_w` at `FoldResult::confidence`, watts.
    pub ci_low_w: f64,
    pub ci_high_w: f64,
    /// Equations (valid samples) in which this unknown has a non-zero coefficient.
    pub samples: u64,
    /// `crate::flags` bits: `NO_SAMPLES`, `NAN_SAMPLES`, `SATURATED`, `PARTIAL_COVERAGE`,
    /// `UNIDENTIFIABLE`.
    pub flags: u32,
}

impl PowerEstimate {
    fn unknown(samples: u64, flags: u32) -> Self {
        PowerEstimate {
            power_w: f64::NAN,
            power_se_w: f64::NAN,
            ci_low_w: f64::NAN,
            ci_high_w: f64::NAN,
            samples,
            flags,
        }
    }
}

/// Result for one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerFold {
    pub power: PowerEstimate,
    /// Number of windows (calls) of this layer.
    pub calls: u64,
    /// Mean window duration on the meter clock, seconds (NaN without calls).
    pub mean_duration_s: f64,
    /// Energy per call, joules: `power_w x mean_duration_s` (the durations are measured, so
    /// the interval is the power's interval scaled by the mean duration).
    pub energy_j: f64,
    pub energy_ci_low_j: f64,
    pub energy_ci_high_j: f64,
}

/// Result of [`fold_layers`].
#[derive(Debug, Clone, PartialEq)]
pub struct FoldResult {
    /// One entry per layer id.
    pub layers: Vec<LayerFold>,
    /// Power between windows: fitted, or the given value with zero standard error.
    pub gap: PowerEstimate,
    /// Samples that gave an equation.
    pub equations: u64,
    /// Samples overlapping a window that were skipped: invalid (NaN/inf) or saturated.
    pub excluded_samples: u64,
    /// Of those, the saturated ones.
    pub saturated_samples: u64,
    /// Unknowns of the least-squares system (layers, plus one when the gap power is fitted).
    pub unknowns: usize,
    /// Rank of the system; `< unknowns` when some unknowns are flagged.
    pub rank: usize,
    /// Residual degrees of freedom, `equations - rank`.
    pub dof: u64,
    /// Residual standard deviation, watts: compare with the meter's noise.
    pub residual_std_w: f64,
    /// Confidence level of the intervals, and the Student t multiplier used for them.
    pub confidence: f64,
    pub t_multiplier: f64,
}

impl FoldResult {
    /// True when some observed unknown could not be separated from the others.
    pub fn rank_deficient(&self) -> bool {
        self.layers
            .iter()
            .map(|l| l.power.flags)
            .chain(std::iter::once(self.gap.flags))
            .any(|f| f & flags::UNIDENTIFIABLE != 0)
    }
}

/// One window in sample coordinates.
#[derive(Debug, Clone, Copy)]
struct Win {
    ua: f64,
    ub: f64,
    layer: usize,
}

/// Calls `visit(j, overlaps, uncovered)` for every sample `j` in `[0, n)` that overlaps at
/// least one window by a positive length, in increasing `j`. `overlaps` holds one
/// `(layer, fraction of the sample covered by that layer's windows)` per layer present;
/// `uncovered` is the fraction covered by no window. `wins` must be sorted by `ua`.
fn sweep<F: FnMut(usize, &[(usize, f64)], f64)>(
    n: usize,
    wins: &[Win],
    layers: usize,
    mut visit: F,
) {
    let mut dense = vec![0.0f64; layers];
    let mut overlaps: Vec<(usize, f64)> = Vec::new();
    let mut active: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut j = 0usize;
    while j < n {
        if active.is_empty() {
            // Jump over samples no window touches.
            while next < wins.len() && wins[next].ub <= j as f64 {
                next += 1;
            }
            let Some(w) = wins.get(next) else { break };
            let first = w.ua.floor();
            if first >= n as f64 {
                break;
            }
            if first > j as f64 {
                j = first as usize;
            }
        }
        let (lo, hi) = (j as f64, (j + 1) as f64);
        while next < wins.len() && wins[next].ua < hi {
            if wins[next].ub > lo && wins[next].ub > wins[next].ua {
                active.push(next);
            }
            next += 1;
        }
        // `active` stays sorted by start, so the union of the windows is one running sweep.
        let (mut union, mut reach) = (0.0, lo);
        for &w in &active {
            let win = wins[w];
            let (a, b) = (win.ua.max(lo), win.ub.min(hi));
            if b > a {
                if dense[win.layer] == 0.0 {
                    overlaps.push((win.layer, 0.0));
                }
                dense[win.layer] += b - a;
                let from = a.max(reach);
                if b > from {
                    union += b - from;
                }
                reach = reach.max(b);
            }
        }
        if !overlaps.is_empty() {
            for o in overlaps.iter_mut() {
                o.1 = dense[o.0];
                dense[o.0] = 0.0;
            }
            let uncovered = 1.0 - union;
            let uncovered = if uncovered < UNCOVERED_SNAP {
                0.0
            } else {
                uncovered
            };
            visit(j, &overlaps, uncovered);
            overlaps.clear();
        }
        active.retain(|&w| wins[w].ub > hi);
        j += 1;
    }
}

/// Least-squares solution of normal equations that may be singular.
#[derive(Debug, Clone)]
struct Solution {
    /// A solution (zero for unknowns left out), used for the residual.
    beta: Vec<f64>,
    /// diag of a generalised inverse of A^T A: the variance of each estimate per unit residual
    /// variance. NaN where the unknown is not identifiable.
    var: Vec<f64>,
    /// The unknown's column is all zero.
    unobserved: Vec<bool>,
    /// The unknown is observed but belongs to a linear dependency.
    dependent: Vec<bool>,
    rank: usize,
}

/// Cholesky with symmetric pivoting (largest remaining diagonal first) of the `n x n`
/// symmetric matrix `a` (full storage, row major), in place: on return the first `rank`
/// columns of the permuted matrix hold `L` (lower part). Stops when the largest remaining
/// pivot is `<= tol`. Returns the permutation (position -> original index) and the rank.
fn pivoted_cholesky(a: &mut [f64], n: usize, tol: f64) -> (Vec<usize>, usize) {
    let mut perm: Vec<usize> = (0..n).collect();
    for k in 0..n {
        let p = (k..n)
            .max_by(|&x, &y| a[x * n + x].total_cmp(&a[y * n + y]))
            .expect("k < n");
        if a[p * n + p].is_nan() || a[p * n + p] <= tol {
            return (perm, k);
        }
        if p != k {
            for c in 0..n {
                a.swap(p * n + c, k * n + c);
            }
            for r in 0..n {
                a.swap(r * n + p, r * n + k);
            }
            perm.swap(p, k);
        }
        let d = a[k * n + k].sqrt();
        a[k * n + k] = d;
        for i in k + 1..n {
            a[i * n + k] /= d;
            a[k * n + i] = a[i * n + k];
        }
        for i in k + 1..n {
            let lik = a[i * n + k];
            if lik != 0.0 {
                for j in k + 1..n {
                    a[i * n + j] -= lik * a[j * n + k];
                }
            }
        }
    }
    (perm, n)
}

/// Solves `ata * beta = aty` (`m x m`, row major) for the identifiable unknowns.
///
/// Columns are scaled to unit diagonal, then factored with pivoted Cholesky. Unknowns left out
/// (their scaled pivot is below `RANK_TOL`) depend on the chosen ones; the null vector of each
/// names every unknown in the dependency, and all of them are flagged: an unknown is
/// identifiable exactly when it is orthogonal to the null space, and then its estimate and
/// variance do not depend on which solution is picked.
fn solve_normal(ata: &[f64], aty: &[f64], m: usize) -> Solution {
    let observed: Vec<usize> = (0..m).filter(|&i| ata[i * m + i] > 0.0).collect();
    let r0 = observed.len();
    let scale: Vec<f64> = observed
        .iter()
        .map(|&i| 1.0 / ata[i * m + i].sqrt())
        .collect();
    let mut a = vec![0.0; r0 * r0];
    for (p, &i) in observed.iter().enumerate() {
        for (q, &j) in observed.iter().enumerate() {
            a[p * r0 + q] = ata[i * m + j] * scale[p] * scale[q];
        }
    }
    let (perm, rank) = pivoted_cholesky(&mut a, r0, RANK_TOL);
    let l = |i: usize, j: usize| a[i * r0 + j];

    // L z = b, then L^T x = z, over the first `rank` permuted positions.
    let mut x: Vec<f64> = perm[..rank]
        .iter()
        .map(|&p| aty[observed[p]] * scale[p])
        .collect();
    for i in 0..rank {
        let s: f64 = (0..i).map(|j| l(i, j) * x[j]).sum();
        x[i] = (x[i] - s) / l(i, i);
    }
    for i in (0..rank).rev() {
        let s: f64 = (i + 1..rank).map(|j| l(j, i) * x[j]).sum();
        x[i] = (x[i] - s) / l(i, i);
    }

    // Each left-out position t has the null vector [c; -e_t] with L11^T c = L21[t].
    let mut involved = vec![false; r0];
    for t in rank..r0 {
        involved[t] = true;
        let mut c: Vec<f64> = (0..rank).map(|j| l(t, j)).collect();
        for i in (0..rank).rev() {
            let s: f64 = (i + 1..rank).map(|j| l(j, i) * c[j]).sum();
            c[i] = (c[i] - s) / l(i, i);
        }
        let big = c.iter().fold(1.0f64, |acc, v| acc.max(v.abs()));
        for (i, v) in c.iter().enumerate() {
            if v.abs() > DEPENDENCY_TOL * big {
                involved[i] = true;
            }
        }
    }

    // diag((L11 L11^T)^-1) = column sums of squares of L11^-1, one column at a time.
    let mut var_scaled = vec![0.0; rank];
    let mut w = vec![0.0; rank];
    for (col, v) in var_scaled.iter_mut().enumerate() {
        // Solve L11 w = e_col (w[i] = 0 for i < col).
        for i in col..rank {
            let rhs = if i == col { 1.0 } else { 0.0 };
            let s: f64 = (col..i).map(|j| l(i, j) * w[j]).sum();
            w[i] = (rhs - s) / l(i, i);
        }
        // (L11^-T L11^-1)_{col,col} = sum_i (L11^-1)_{i,col}^2.
        *v = w[col..rank].iter().map(|v| v * v).sum();
    }

    let mut sol = Solution {
        beta: vec![0.0; m],
        var: vec![f64::NAN; m],
        unobserved: vec![true; m],
        dependent: vec![false; m],
        rank,
    };
    for &i in &observed {
        sol.unobserved[i] = false;
    }
    for (pos, &p) in perm.iter().enumerate() {
        let i = observed[p];
        if pos < rank {
            sol.beta[i] = x[pos] * scale[p];
        }
        if involved[pos] {
            sol.dependent[i] = true;
        } else {
            sol.var[i] = var_scaled[pos] * scale[p] * scale[p];
        }
    }
    sol
}

/// Per-layer mean power (and energy per call) from many repetitions of a model whose layer
/// windows are shorter than the sample period. See the module docs for the model.
///
/// `power[i]` covers `[t0 + i/fs, t0 + (i+1)/fs)` (meter clock, an integrating meter);
/// window `w` is `[starts[w], ends[w]]` on the agent clock and belongs to layer
/// `layer_ids[w]`. Windows may come in any order and should not overlap each other (the gap
/// fraction of a sample is what no window covers).
pub fn fold_layers<T: Sample>(
    power: &[T],
    t0: f64,
    fs: f64,
    starts: &[f64],
    ends: &[f64],
    layer_ids: &[usize],
    options: &FoldOptions,
) -> Result<FoldResult, EnergyError> {
    check_sample_rate(fs)?;
    check_finite("t0", t0)?;
    options.clock.validate()?;
    check_windows(starts, ends)?;
    if layer_ids.len() != starts.len() {
        return Err(EnergyError::NoData(format!(
            "layer_ids must have one entry per window, got {} layer ids and {} windows",
            layer_ids.len(),
            starts.len()
        )));
    }
    if let Some(g) = options.gap_power_w {
        check_finite("gap_power_w", g)?;
    }
    if let Some(w) = options.saturation_w {
        check_finite("saturation_w", w)?;
    }
    let saturation = options.saturation_w.unwrap_or(f64::INFINITY);
    let confidence = options.confidence;
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(EnergyError::InvalidParameter {
            name: "confidence",
            value: confidence,
            reason: "must be in (0, 1)",
        });
    }
    let k = options
        .layers
        .unwrap_or_else(|| layer_ids.iter().max().map_or(0, |&m| m + 1));
    if let Some((w, &id)) = layer_ids.iter().enumerate().find(|&(_, &id)| id >= k) {
        return Err(EnergyError::NoData(format!(
            "window {w}: layer id {id} is out of range (layers = {k})"
        )));
    }
    let fit_gap = options.gap_power_w.is_none();
    let m = k + usize::from(fit_gap);
    if m > MAX_UNKNOWNS {
        return Err(EnergyError::InvalidParameter {
            name: "layers",
            value: k as f64,
            reason: "is too large: at most 2048 unknowns (the normal equations are dense)",
        });
    }

    let n = power.len();
    let clock = options.clock;
    let u = |agent_t: f64| (clock.to_meter(agent_t) - t0) * fs;
    let mut wins: Vec<Win> = starts
        .iter()
        .zip(ends)
        .zip(layer_ids)
        .map(|((&s, &e), &layer)| Win {
            ua: u(s),
            ub: u(e),
            layer,
        })
        .collect();
    wins.sort_by(|x, y| x.ua.total_cmp(&y.ua));

    let mut calls = vec![0u64; k];
    let mut duration = vec![0.0f64; k];
    let mut flag = vec![0u32; m];
    for w in &wins {
        calls[w.layer] += 1;
        duration[w.layer] += (w.ub - w.ua) / fs;
        if w.ua < 0.0 || w.ub > n as f64 {
            flag[w.layer] |= flags::PARTIAL_COVERAGE;
        }
    }

    // Pass 1: normal equations.
    let mut ata = vec![0.0f64; m * m];
    let mut aty = vec![0.0f64; m];
    let mut samples = vec![0u64; m];
    let (mut equations, mut excluded, mut saturated) = (0u64, 0u64, 0u64);
    let mut row: Vec<(usize, f64)> = Vec::new();
    sweep(n, &wins, k, |j, overlaps, uncovered| {
        let y = power[j].to_f64();
        if !(y.is_finite() && y < saturation) {
            excluded += 1;
            let bit = if y.is_finite() {
                saturated += 1;
                flags::SATURATED
            } else {
                flags::NAN_SAMPLES
            };
            for &(l, _) in overlaps {
                flag[l] |= bit;
            }
            if fit_gap && uncovered > 0.0 {
                flag[k] |= bit;
            }
            return;
        }
        row.clear();
        row.extend_from_slice(overlaps);
        let y = match options.gap_power_w {
            Some(g) => y - g * uncovered,
            None => {
                if uncovered > 0.0 {
                    row.push((k, uncovered));
                }
                y
            }
        };
        for &(a, va) in &row {
            samples[a] += 1;
            aty[a] += va * y;
            let r = &mut ata[a * m..(a + 1) * m];
            for &(b, vb) in &row {
                r[b] += va * vb;
            }
        }
        equations += 1;
    });

    let sol = solve_normal(&ata, &aty, m);

    // Pass 2: residual sum of squares of the solution.
    let mut rss = 0.0f64;
    sweep(n, &wins, k, |j, overlaps, uncovered| {
        let y = power[j].to_f64();
        if !(y.is_finite() && y < saturation) {
            return;
        }
        let gap = options.gap_power_w.unwrap_or_else(|| sol.beta[k]);
        let fit: f64 =
            overlaps.iter().map(|&(l, o)| sol.beta[l] * o).sum::<f64>() + gap * uncovered;
        rss += (y - fit) * (y - fit);
    });
    let dof = equations.saturating_sub(sol.rank as u64);
    let sigma2 = if dof > 0 { rss / dof as f64 } else { f64::NAN };
    let t = student_t_two_sided(confidence, dof);

    let estimate = |i: usize| {
        let mut f = flag[i];
        if sol.unobserved[i] {
            f |= flags::NO_SAMPLES;
        }
        if sol.dependent[i] {
            f |= flags::UNIDENTIFIABLE;
        }
        if sol.unobserved[i] || sol.dependent[i] {
            return PowerEstimate::unknown(samples[i], f);
        }
        let (p, se) = (sol.beta[i], (sigma2 * sol.var[i]).sqrt());
        PowerEstimate {
            power_w: p,
            power_se_w: se,
            ci_low_w: p - t * se,
            ci_high_w: p + t * se,
            samples: samples[i],
            flags: f,
        }
    };
    let layers = (0..k)
        .map(|i| {
            let power = estimate(i);
            let mean_duration_s = if calls[i] > 0 {
                duration[i] / calls[i] as f64
            } else {
                f64::NAN
            };
            LayerFold {
                power,
                calls: calls[i],
                mean_duration_s,
                energy_j: power.power_w * mean_duration_s,
                energy_ci_low_j: power.ci_low_w * mean_duration_s,
                energy_ci_high_j: power.ci_high_w * mean_duration_s,
            }
        })
        .collect();
    let gap = match options.gap_power_w {
        Some(g) => PowerEstimate {
            power_w: g,
            power_se_w: 0.0,
            ci_low_w: g,
            ci_high_w: g,
            samples: 0,
            flags: 0,
        },
        None => estimate(k),
    };
    Ok(FoldResult {
        layers,
        gap,
        equations,
        excluded_samples: excluded,
        saturated_samples: saturated,
        unknowns: m,
        rank: sol.rank,
        dof,
        residual_std_w: sigma2.sqrt(),
        confidence,
        t_multiplier: t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pivoted_cholesky_finds_rank_and_factor() {
        // [[4, 2, 2], [2, 2, 2], [2, 2, 2]]: rank 2 (rows 2 and 3 equal).
        let mut a = vec![4.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0];
        let (perm, rank) = pivoted_cholesky(&mut a, 3, 1e-12);
        assert_eq!(rank, 2);
        assert_eq!(perm[0], 0);
        assert!((a[0] - 2.0).abs() < 1e-15);
        // Second pivot: 2 - 2^2 / 4 = 1.
        assert!((a[4] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn sweep_reports_overlaps_and_uncovered() {
        let wins = [
            Win {
                ua: 0.25,
                ub: 0.5,
                layer: 0,
            },
            Win {
                ua: 0.5,
                ub: 1.75,
                layer: 1,
            },
            Win {
                ua: 5.5,
                ub: 5.6,
                layer: 0,
            },
        ];
        let mut seen = Vec::new();
        sweep(10, &wins, 2, |j, o, u| seen.push((j, o.to_vec(), u)));
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], (0, vec![(0, 0.25), (1, 0.5)], 0.25));
        assert_eq!(seen[1], (1, vec![(1, 0.75)], 0.25));
        assert_eq!(seen[2].0, 5);
        assert!((seen[2].2 - 0.9).abs() < 1e-12);
    }
}
