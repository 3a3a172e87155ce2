mod common;

use common::Rng;
use joulefarm_energy::align_offset;

const FS: f64 = 10_000.0;

/// A non-periodic busy pattern on the agent clock: 12 bursts of 20-80 ms with 30-100 ms gaps.
fn pattern(seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    let mut t = 0.2;
    for _ in 0..12 {
        let busy = rng.uniform(0.02, 0.08);
        starts.push(t);
        ends.push(t + busy);
        t += busy + rng.uniform(0.03, 0.1);
    }
    (starts, ends)
}

/// What an integrating meter records: idle + delta * (busy fraction of each sample interval),
/// with busy intervals shifted onto the meter clock by `offset`. Brute force, O(N x K).
fn synth(n: usize, t0: f64, starts: &[f64], ends: &[f64], offset: f64, noise_w: f64) -> Vec<f64> {
    let mut rng = Rng::new(99);
    (0..n)
        .map(|j| {
            let (lo, hi) = (t0 + j as f64 / FS, t0 + (j + 1) as f64 / FS);
            let busy: f64 = starts
                .iter()
                .zip(ends)
                .map(|(&s, &e)| ((e + offset).min(hi) - (s + offset).max(lo)).max(0.0))
                .sum();
            1.0 + 2.0 * busy * FS + noise_w * rng.uniform(-1.0, 1.0)
        })
        .collect()
}

#[test]
fn recovers_positive_offset_clean() {
    let (s, e) = pattern(1);
    let x = synth(20_000, 0.0, &s, &e, 0.0037, 0.0);
    let a = align_offset(&x, 0.0, FS, &s, &e, 0.05).unwrap();
    assert!((a.offset_s - 0.0037).abs() < 1e-6, "{a:?}");
    assert!(a.correlation > 0.999_999, "{a:?}");
    assert!(a.residual_w < 1e-3, "{a:?}");
}

#[test]
fn recovers_fractional_negative_offset_with_noise() {
    let (s, e) = pattern(2);
    let x = synth(20_000, 0.0, &s, &e, -0.012_345, 0.3);
    let a = align_offset(&x, 0.0, FS, &s, &e, 0.05).unwrap();
    assert!((a.offset_s + 0.012_345).abs() < 0.05e-3, "{a:?}");
    // Uniform noise of half-width 0.3 W has RMS 0.3 / sqrt(3).
    assert!((a.residual_w - 0.3 / 3f64.sqrt()).abs() < 0.02, "{a:?}");
    assert!(a.correlation > 0.9, "{a:?}");
}

#[test]
fn works_with_f32_and_shifted_t0() {
    let (s, e) = pattern(3);
    let t0 = -0.1; // trace starts before agent time 0
    let x: Vec<f32> = synth(25_000, t0, &s, &e, 0.021_03, 0.05)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let a = align_offset(&x, t0, FS, &s, &e, 0.03).unwrap();
    assert!((a.offset_s - 0.021_03).abs() < 0.05e-3, "{a:?}");
}

#[test]
fn tolerates_nan_samples() {
    let (s, e) = pattern(4);
    let mut x = synth(20_000, 0.0, &s, &e, 0.0051, 0.0);
    for j in (3000..3100).chain(9000..9003) {
        x[j] = f64::NAN;
    }
    let a = align_offset(&x, 0.0, FS, &s, &e, 0.05).unwrap();
    assert!((a.offset_s - 0.0051).abs() < 1e-6, "{a:?}");
}

#[test]
fn offset_at_the_edge_of_the_search_range() {
    let (s, e) = pattern(5);
    let x = synth(20_000, 0.0, &s, &e, 0.02, 0.0);
    let a = align_offset(&x, 0.0, FS, &s, &e, 0.02).unwrap();
    assert!((a.offset_s - 0.02).abs() < 1e-6, "{a:?}");
}

#[test]
fn invalid_arguments() {
    let x = vec![1.0; 100];
    let msg = |r: Result<_, joulefarm_energy::EnergyError>| r.unwrap_err().to_string();
    assert_eq!(
        msg(align_offset(&x, 0.0, FS, &[0.0], &[0.001], -1.0)),
        "max_offset_s (-1.0) must be >= 0"
    );
    assert_eq!(
        msg(align_offset(&x, 0.0, 0.0, &[0.0], &[0.001], 0.1)),
        "sample rate must be finite and > 0, got 0.0"
    );
    assert_eq!(
        msg(align_offset(&x, 0.0, FS, &[0.002], &[0.001], 0.01)),
        "window 0: end (0.001) is before start (0.002)"
    );
    assert_eq!(
        msg(align_offset(&x, 0.0, FS, &[], &[], 0.01)),
        "align_offset: no busy interval with a positive duration"
    );
    assert!(
        msg(align_offset(&x, 0.0, FS, &[5.0], &[6.0], 0.01)).contains("does not overlap the trace")
    );
    // A flat trace has no contrast to correlate with.
    assert!(msg(align_offset(&x, 0.0, FS, &[0.002], &[0.004], 0.001)).contains("no contrast"));
}

#[test]
fn align_clock_recovers_offset_and_drift() {
    // Two patterns 20 s apart; meter = agent * (1 + 80e-6) + 0.0031.
    let (s1, e1) = pattern(6);
    let (s2, e2): (Vec<f64>, Vec<f64>) = {
        let (s, e) = pattern(7);
        (
            s.iter().map(|v| v + 20.0).collect(),
            e.iter().map(|v| v + 20.0).collect(),
        )
    };
    let starts: Vec<f64> = s1.iter().chain(&s2).copied().collect();
    let ends: Vec<f64> = e1.iter().chain(&e2).copied().collect();
    let (drift, offset) = (80e-6, 0.0031);
    let n = 22 * FS as usize;
    let mapped_s: Vec<f64> = starts.iter().map(|t| t * (1.0 + drift) + offset).collect();
    let mapped_e: Vec<f64> = ends.iter().map(|t| t * (1.0 + drift) + offset).collect();
    let x = synth(n, 0.0, &mapped_s, &mapped_e, 0.0, 0.0);
    let fit = joulefarm_energy::align_clock(&x, 0.0, FS, &starts, &ends, 10.0, 0.01).unwrap();
    assert!((fit.drift_ppm - 80.0).abs() < 1.0, "{fit:?}");
    assert!((fit.offset_s - offset).abs() < 0.02e-3, "{fit:?}");
}
