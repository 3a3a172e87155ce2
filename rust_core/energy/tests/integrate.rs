mod common;

use common::{reference, Rng};
use joulefarm_energy::{
    flags, idle_power, integrate_uniform, ClockMap, EnergyError, SignalModel, WindowStats,
};

const HOLD: SignalModel = SignalModel::Hold;
const LINEAR: SignalModel = SignalModel::Linear;
const ID: ClockMap = ClockMap::IDENTITY;

fn one(x: &[f64], fs: f64, start: f64, end: f64, model: SignalModel) -> WindowStats {
    integrate_uniform(x, 0.0, fs, &[start], &[end], ID, model, None).unwrap()[0]
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

macro_rules! assert_close {
    ($a:expr, $b:expr) => {
        assert_close!($a, $b, 1e-12)
    };
    ($a:expr, $b:expr, $tol:expr) => {{
        let (a, b) = ($a, $b);
        assert!(
            close(a, b, $tol),
            "{} = {a} != {b} (tol {})",
            stringify!($a),
            $tol
        );
    }};
}

const STEPS: [f64; 4] = [1.0, 2.0, 3.0, 4.0];

#[test]
fn hold_constant_power() {
    let x = vec![2.0; 100];
    let w = one(&x, 10.0, 1.0, 3.0, HOLD);
    assert_close!(w.energy_j, 4.0);
    assert_close!(w.mean_power_w, 2.0);
    assert_eq!(w.samples, 20);
    assert_eq!(w.coverage, 1.0);
    assert_eq!(w.flags, 0);
}

#[test]
fn hold_partial_edge_samples() {
    let w = one(&STEPS, 1.0, 0.5, 2.25, HOLD);
    assert_close!(w.energy_j, 0.5 * 1.0 + 2.0 + 0.25 * 3.0);
    assert_close!(w.mean_power_w, 3.25 / 1.75);
    assert_eq!(w.samples, 3);
    assert_eq!(w.flags, 0);
}

#[test]
fn hold_window_inside_one_sample() {
    let w = one(&STEPS, 1.0, 1.2, 1.7, HOLD);
    assert_close!(w.energy_j, 1.0);
    assert_close!(w.mean_power_w, 2.0);
    assert_eq!(w.samples, 1);
}

#[test]
fn hold_sample_rate_scales_time() {
    // fs = 4 Hz: sample i covers [i/4, (i+1)/4).
    let w = one(&STEPS, 4.0, 0.125, 0.5625, HOLD);
    assert_close!(w.energy_j, (0.5 * 1.0 + 2.0 + 0.25 * 3.0) / 4.0);
    assert_close!(w.mean_power_w, 3.25 / 1.75);
}

#[test]
fn linear_known_answers() {
    // Midpoints at 0.5..3.5 with values 1..4: power = u + 0.5 between them, flat outside.
    assert_close!(one(&STEPS, 1.0, 0.0, 4.0, LINEAR).energy_j, 10.0);
    assert_close!(
        one(&STEPS, 1.0, 0.2, 1.3, LINEAR).energy_j,
        0.3 + (1.8f64.powi(2) - 1.0) / 2.0
    );
    assert_close!(
        one(&STEPS, 1.0, 1.1, 1.4, LINEAR).energy_j,
        (1.9f64.powi(2) - 1.6f64.powi(2)) / 2.0
    );
    assert_close!(
        one(&STEPS, 1.0, 2.6, 3.9, LINEAR).energy_j,
        (16.0 - 3.1f64.powi(2)) / 2.0 + 1.6
    );
    assert_close!(
        one(&STEPS, 1.0, 1.0, 3.0, LINEAR).energy_j,
        (3.5f64.powi(2) - 1.5f64.powi(2)) / 2.0
    );
}

#[test]
fn linear_single_sample_trace_is_flat() {
    let w = one(&[5.0], 2.0, 0.1, 0.4, LINEAR);
    assert_close!(w.energy_j, 5.0 * 0.3);
}

#[test]
fn linear_equals_hold_on_whole_trace_of_flat_ends() {
    // Over the whole trace the linear model conserves energy: each interior midpoint segment is
    // a trapezoid and the flat half-samples at the ends make up the rest.
    let mut rng = Rng::new(7);
    let x: Vec<f64> = (0..1000).map(|_| rng.uniform(0.0, 5.0)).collect();
    let h = one(&x, 100.0, 0.0, 10.0, HOLD);
    let l = one(&x, 100.0, 0.0, 10.0, LINEAR);
    assert_close!(l.energy_j, h.energy_j, 1e-12);
}

#[test]
fn windows_outside_the_trace() {
    let before = one(&STEPS, 1.0, -2.0, -1.0, HOLD);
    assert!(before.energy_j.is_nan() && before.mean_power_w.is_nan());
    assert_eq!(before.flags, flags::NO_SAMPLES | flags::PARTIAL_COVERAGE);
    assert_eq!(before.samples, 0);
    assert_eq!(before.coverage, 0.0);

    let after = one(&STEPS, 1.0, 4.0, 9.0, LINEAR);
    assert_eq!(after.flags, flags::NO_SAMPLES | flags::PARTIAL_COVERAGE);

    let straddle = one(&STEPS, 1.0, -1.0, 0.5, HOLD);
    assert_close!(straddle.energy_j, 0.5);
    assert_close!(straddle.mean_power_w, 1.0);
    assert_close!(straddle.coverage, 0.5 / 1.5);
    assert_eq!(straddle.flags, flags::PARTIAL_COVERAGE);
    assert_eq!(straddle.samples, 1);

    let tail = one(&STEPS, 1.0, 3.5, 10.0, LINEAR);
    assert_close!(tail.energy_j, 2.0);
    assert_close!(tail.coverage, 0.5 / 6.5);
}

#[test]
fn empty_trace_and_zero_length_window() {
    let empty: [f64; 0] = [];
    let w = one(&empty, 1.0, 0.0, 1.0, HOLD);
    assert_eq!(w.flags, flags::NO_SAMPLES | flags::PARTIAL_COVERAGE);
    let z = one(&STEPS, 1.0, 1.5, 1.5, HOLD);
    assert_eq!(z.flags, flags::NO_SAMPLES);
    assert!(z.energy_j.is_nan());
    assert_eq!(z.samples, 0);
}

#[test]
fn nan_samples_are_excluded_and_flagged() {
    let x = [1.0, f64::NAN, 3.0, 4.0];
    let w = one(&x, 1.0, 0.0, 4.0, HOLD);
    assert_close!(w.energy_j, 8.0);
    assert_close!(w.mean_power_w, 8.0 / 3.0);
    assert_close!(w.coverage, 0.75);
    assert_eq!(w.samples, 3);
    assert_eq!(w.flags, flags::NAN_SAMPLES | flags::PARTIAL_COVERAGE);

    // Linear: the valid runs [1] and [3, 4] are each held flat towards the excluded sample.
    assert_close!(
        one(&x, 1.0, 0.0, 4.0, LINEAR).energy_j,
        1.0 + 0.5 * 3.0 + 3.5 + 0.5 * 4.0
    );
    assert_close!(one(&x, 1.0, 2.2, 2.8, LINEAR).energy_j, 0.9 + 0.9 + 0.045);
    assert_close!(one(&x, 1.0, 0.2, 0.9, LINEAR).energy_j, 0.7);

    let inf = one(
        &[1.0, f64::INFINITY, f64::NEG_INFINITY],
        1.0,
        0.0,
        3.0,
        HOLD,
    );
    assert_close!(inf.energy_j, 1.0);
    assert_eq!(inf.flags, flags::NAN_SAMPLES | flags::PARTIAL_COVERAGE);

    let all_nan = one(&x, 1.0, 1.2, 1.8, LINEAR);
    assert_eq!(
        all_nan.flags,
        flags::NO_SAMPLES | flags::NAN_SAMPLES | flags::PARTIAL_COVERAGE
    );
    assert!(all_nan.energy_j.is_nan());
    assert_eq!(all_nan.coverage, 0.0);
}

#[test]
fn nan_deep_inside_a_long_window() {
    // Crosses several summation blocks; the NaN sends only its block down the slow path.
    let mut rng = Rng::new(11);
    let mut x: Vec<f64> = (0..20_000).map(|_| rng.uniform(0.5, 2.0)).collect();
    x[9_000] = f64::NAN;
    x[9_001] = f64::NAN;
    x[15_000] = f64::NAN;
    for model in [HOLD, LINEAR] {
        let w = one(&x, 1.0, 10.3, 19_990.7, model);
        let (e, c) = reference(&x, 10.3, 19_990.7, model);
        assert_close!(w.energy_j, e, 1e-9);
        assert_close!(w.coverage, c / (19_990.7 - 10.3), 1e-9);
        assert_eq!(w.flags, flags::NAN_SAMPLES | flags::PARTIAL_COVERAGE);
        assert_eq!(w.samples, 19_981 - 3); // samples 10..=19_990
    }
}

#[test]
fn offset_and_drift_map_agent_to_meter() {
    // Meter trace starts at t0 = 100 s, 1 kHz; 1 W before meter t = 101 s, 3 W after.
    let x: Vec<f64> = (0..2000)
        .map(|i| if i < 1000 { 1.0 } else { 3.0 })
        .collect();
    let clock = ClockMap::new(100.5, 0.0);
    let w = integrate_uniform(&x, 100.0, 1000.0, &[0.4], &[0.6], clock, HOLD, None).unwrap()[0];
    assert_close!(w.energy_j, 0.1 * 1.0 + 0.1 * 3.0, 1e-9);

    // +1000 ppm: an agent second lasts 1.001 meter seconds.
    let flat = vec![2.0; 10_000];
    let drift = ClockMap::new(0.0, 1000.0);
    let w = integrate_uniform(&flat, 0.0, 1000.0, &[1.0], &[2.0], drift, HOLD, None).unwrap()[0];
    assert_close!(w.energy_j, 2.0 * 1.001, 1e-9);

    // Drift moves later windows further: agent 5.0 s is meter 5.005 s.
    let step: Vec<f64> = (0..10_000)
        .map(|i| if i < 5005 { 0.0 } else { 1.0 })
        .collect();
    let w = integrate_uniform(&step, 0.0, 1000.0, &[4.9], &[5.1], drift, HOLD, None).unwrap()[0];
    assert_close!(w.energy_j, 5.1 * 1.001 - 5.005, 1e-9);
}

#[test]
fn f32_and_f64_agree() {
    let mut rng = Rng::new(3);
    let x32: Vec<f32> = (0..5000).map(|_| rng.uniform(0.0, 3.0) as f32).collect();
    let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
    let starts = [0.01, 1.234, -0.5, 2.0];
    let ends = [0.02, 3.5, 0.7, 6.0];
    for model in [HOLD, LINEAR] {
        let a = integrate_uniform(&x32, 0.0, 1000.0, &starts, &ends, ID, model, None).unwrap();
        let b = integrate_uniform(&x64, 0.0, 1000.0, &starts, &ends, ID, model, None).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn random_windows_match_reference() {
    let mut rng = Rng::new(42);
    for trial in 0..2000 {
        let n = 1 + (rng.next_u64() % 60) as usize;
        let x: Vec<f64> = (0..n)
            .map(|_| {
                if rng.uniform(0.0, 1.0) < 0.1 {
                    f64::NAN
                } else {
                    rng.uniform(-1.0, 5.0)
                }
            })
            .collect();
        let fs = rng.uniform(0.5, 50.0);
        let t0 = rng.uniform(-10.0, 10.0);
        let model = if trial % 2 == 0 { HOLD } else { LINEAR };
        let span = n as f64 / fs;
        let s = t0 + rng.uniform(-0.3 * span, 1.1 * span);
        let e = s + rng.uniform(0.0, 0.8 * span);
        let w = integrate_uniform(&x, t0, fs, &[s], &[e], ID, model, None).unwrap()[0];
        let (a, b) = ((s - t0) * fs, (e - t0) * fs);
        let (re, rc) = reference(&x, a, b, model);
        if rc == 0.0 {
            assert!(w.flags & flags::NO_SAMPLES != 0, "trial {trial}: {w:?}");
            continue;
        }
        assert_close!(w.energy_j, re / fs, 1e-9);
        assert_close!(w.coverage, rc / (b - a), 1e-9);
    }
}

#[test]
fn unsorted_and_overlapping_windows() {
    let x: Vec<f64> = (0..100).map(|i| i as f64).collect();
    let starts = [50.0, 0.0, 10.0, 10.0];
    let ends = [60.0, 100.0, 20.0, 15.0];
    let w = integrate_uniform(&x, 0.0, 1.0, &starts, &ends, ID, HOLD, None).unwrap();
    let expect = |s: usize, e: usize| (s..e).map(|i| i as f64).sum::<f64>();
    assert_close!(w[0].energy_j, expect(50, 60));
    assert_close!(w[1].energy_j, expect(0, 100));
    assert_close!(w[2].energy_j, expect(10, 20));
    assert_close!(w[3].energy_j, expect(10, 15));
}

fn err(result: Result<Vec<WindowStats>, EnergyError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn invalid_arguments_are_errors() {
    let x = STEPS;
    let call = |t0: f64, fs: f64, s: &[f64], e: &[f64], c: ClockMap| {
        err(integrate_uniform(&x, t0, fs, s, e, c, HOLD, None))
    };
    assert_eq!(
        call(0.0, 0.0, &[0.0], &[1.0], ID),
        "sample rate must be finite and > 0, got 0.0"
    );
    assert!(call(0.0, -5.0, &[0.0], &[1.0], ID).contains("got -5.0"));
    assert!(call(0.0, f64::NAN, &[0.0], &[1.0], ID).contains("got NaN"));
    assert!(call(0.0, f64::INFINITY, &[0.0], &[1.0], ID).contains("got inf"));
    assert_eq!(
        call(f64::NAN, 1.0, &[0.0], &[1.0], ID),
        "t0 (NaN) must be finite"
    );
    assert_eq!(
        call(0.0, 1.0, &[0.0, 1.0], &[1.0], ID),
        "starts and ends must have the same length, got 2 starts and 1 ends"
    );
    let starts: Vec<f64> = (0..20).map(|i| i as f64 * 0.1).collect();
    let mut ends: Vec<f64> = starts.iter().map(|s| s + 0.05).collect();
    ends[17] = 1.2;
    let mut starts17 = starts.clone();
    starts17[17] = 1.5;
    assert_eq!(
        call(0.0, 1.0, &starts17, &ends, ID),
        "window 17: end (1.2) is before start (1.5)"
    );
    assert_eq!(
        call(0.0, 1.0, &[0.0, f64::NAN], &[1.0, 2.0], ID),
        "window 1: start (NaN) is not finite"
    );
    assert_eq!(
        call(0.0, 1.0, &[0.0], &[f64::INFINITY], ID),
        "window 0: end (inf) is not finite"
    );
    assert_eq!(
        call(0.0, 1.0, &[0.0], &[1.0], ClockMap::new(f64::NAN, 0.0)),
        "offset_s (NaN) must be finite"
    );
    assert!(call(0.0, 1.0, &[0.0], &[1.0], ClockMap::new(0.0, -1e6))
        .starts_with("drift_ppm (-1000000.0) must be > -1e6"));
    assert_eq!(
        "cubic".parse::<SignalModel>().unwrap_err().to_string(),
        "unknown signal model \"cubic\" (expected \"hold\" or \"linear\")"
    );
}

#[test]
fn idle_power_pools_windows() {
    let x: Vec<f64> = (0..100).map(|i| if i < 50 { 1.0 } else { 3.0 }).collect();
    // 10 samples at 1 W and 30 samples at 3 W: (10 + 90) / 40 = 2.5 W.
    let p = idle_power(&x, 0.0, 1.0, &[0.0, 50.0], &[10.0, 80.0], ID, HOLD, None).unwrap();
    assert_close!(p, 2.5);
    // A window off the trace contributes nothing.
    let p = idle_power(&x, 0.0, 1.0, &[0.0, 500.0], &[10.0, 600.0], ID, HOLD, None).unwrap();
    assert_close!(p, 1.0);
    // No valid sample in any window: NaN, not an error and not zero.
    assert!(idle_power(&x, 0.0, 1.0, &[500.0], &[600.0], ID, HOLD, None)
        .unwrap()
        .is_nan());
    assert!(idle_power(&x, 0.0, 1.0, &[], &[], ID, HOLD, None)
        .unwrap()
        .is_nan());
}

#[test]
fn flag_names_in_bit_order() {
    assert_eq!(
        flags::names(flags::NAN_SAMPLES | flags::PARTIAL_COVERAGE),
        ["partial_coverage", "nan_samples"]
    );
    assert!(flags::names(0).is_empty());
}

#[test]
fn current_times_voltage_equals_integrating_the_product() {
    use joulefarm_energy::{integrate_series, CurrentVoltage};
    let mut rng = Rng::new(41);
    let n = 9000;
    let current: Vec<f32> = (0..n)
        .map(|_| rng.uniform(0.1, 1.5) as f32)
        .map(|v| if v > 1.49 { f32::NAN } else { v })
        .collect();
    let voltage: Vec<f64> = (0..n).map(|_| rng.uniform(4.9, 5.1)).collect();
    let power: Vec<f64> = current
        .iter()
        .zip(&voltage)
        .map(|(&i, &v)| i as f64 * v)
        .collect();
    let starts: Vec<f64> = (0..50).map(|_| rng.uniform(-10.0, 9000.0)).collect();
    let ends: Vec<f64> = starts
        .iter()
        .map(|s| s + rng.uniform(0.0, 6000.0))
        .collect();
    let iv = CurrentVoltage::new(&current, &voltage).unwrap();
    for model in [HOLD, LINEAR] {
        for sat in [None, Some(7.0)] {
            let want = integrate_uniform(&power, 0.0, 1.0, &starts, &ends, ID, model, sat).unwrap();
            let got = integrate_series(iv, 0.0, 1.0, &starts, &ends, ID, model, sat).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert_eq!((g.flags, g.samples), (w.flags, w.samples));
                assert!(g.energy_j.to_bits() == w.energy_j.to_bits() || w.energy_j.is_nan());
            }
        }
    }
}
