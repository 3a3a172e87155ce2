mod common;

use common::Rng;
use joulefarm_energy::{
    flags, integrate_timestamped, integrate_uniform, ClockMap, SignalModel, WindowStats,
};

const ID: ClockMap = ClockMap::IDENTITY;

fn one(t: &[f64], x: &[f64], s: f64, e: f64, model: SignalModel, gap: Option<f64>) -> WindowStats {
    integrate_timestamped(t, x, &[s], &[e], ID, model, gap, None)
        .unwrap()
        .0[0]
}

#[test]
fn hold_and_linear_known_answers() {
    let t = [0.0, 1.0, 3.0, 4.0];
    let x = [1.0, 2.0, 4.0, 0.0];
    let h = one(&t, &x, 0.5, 3.5, SignalModel::Hold, None);
    assert!(
        (h.energy_j - (0.5 * 1.0 + 2.0 * 2.0 + 0.5 * 4.0)).abs() < 1e-12,
        "{h:?}"
    );
    assert_eq!(h.samples, 3);
    assert_eq!(h.flags, 0);
    // Linear: trapezoids between points; [0.5, 1] mean 1.75, [1, 3] mean 3, [3, 3.5] mean 3.
    let l = one(&t, &x, 0.5, 3.5, SignalModel::Linear, None);
    assert!(
        (l.energy_j - (0.5 * 1.75 + 2.0 * 3.0 + 0.5 * 3.0)).abs() < 1e-12,
        "{l:?}"
    );
}

#[test]
fn matches_uniform_hold_on_a_regular_grid() {
    let mut rng = Rng::new(5);
    let n = 1000;
    let x: Vec<f64> = (0..n).map(|_| rng.uniform(0.0, 4.0)).collect();
    // Timestamps mark interval starts; the uniform trace's last interval has no end point
    // here, so compare windows inside [t[0], t[n-1]].
    let t: Vec<f64> = (0..n).map(|i| 10.0 + i as f64 / 100.0).collect();
    let starts = [10.123, 12.0, 15.5];
    let ends = [10.456, 17.77, 19.98];
    let (ts, q) = integrate_timestamped(
        &t,
        &x,
        &starts,
        &ends,
        ID,
        SignalModel::Hold,
        Some(0.05),
        None,
    )
    .unwrap();
    let us =
        integrate_uniform(&x, 10.0, 100.0, &starts, &ends, ID, SignalModel::Hold, None).unwrap();
    for (a, b) in ts.iter().zip(&us) {
        assert!((a.energy_j - b.energy_j).abs() < 1e-9, "{a:?} {b:?}");
        assert_eq!(a.flags, 0);
    }
    assert_eq!(q.samples, 1000);
    assert_eq!(q.gaps, 0);
    assert!((q.mean_interval_s - 0.01).abs() < 1e-12);
}

#[test]
fn gaps_are_excluded_and_flagged() {
    let t = [0.0, 1.0, 2.0, 10.0, 11.0];
    let x = [1.0; 5];
    let (w, q) = integrate_timestamped(
        &t,
        &x,
        &[0.0, 0.0, 10.0],
        &[11.0, 2.0, 11.0],
        ID,
        SignalModel::Hold,
        Some(1.5),
        None,
    )
    .unwrap();
    assert_eq!(w[0].flags, flags::GAP | flags::PARTIAL_COVERAGE);
    assert!((w[0].energy_j - 3.0).abs() < 1e-12);
    assert!((w[0].coverage - 3.0 / 11.0).abs() < 1e-12);
    assert_eq!(w[1].flags, 0);
    assert_eq!(w[2].flags, 0);
    assert_eq!(q.gaps, 1);
    assert_eq!(q.gap_s, 8.0);
    assert_eq!(q.max_interval_s, 8.0);
    // Without gap detection the long interval is integrated.
    let w = one(&t, &x, 0.0, 11.0, SignalModel::Hold, None);
    assert_eq!(w.flags, 0);
    assert!((w.energy_j - 11.0).abs() < 1e-12);
}

#[test]
fn non_monotonic_timestamps_are_dropped_and_flagged() {
    let t = [0.0, 1.0, 2.0, 1.5, 3.0, 4.0, f64::NAN, 5.0];
    let x = [1.0, 1.0, 1.0, 100.0, 1.0, 1.0, 100.0, 1.0];
    let (w, q) = integrate_timestamped(
        &t,
        &x,
        &[0.0, 1.9, 3.1],
        &[5.0, 2.5, 3.9],
        ID,
        SignalModel::Hold,
        None,
        None,
    )
    .unwrap();
    assert_eq!(q.non_monotonic, 2);
    assert!((w[0].energy_j - 5.0).abs() < 1e-12, "{:?}", w[0]);
    assert_eq!(w[0].flags, flags::NON_MONOTONIC);
    assert_eq!(w[1].flags, flags::NON_MONOTONIC);
    assert_eq!(w[2].flags, 0);
}

#[test]
fn nan_values_and_outside_windows() {
    let t = [0.0, 1.0, 2.0, 3.0];
    let x = [1.0, f64::NAN, 3.0, 4.0];
    let h = one(&t, &x, 0.0, 3.0, SignalModel::Hold, None);
    assert!((h.energy_j - 4.0).abs() < 1e-12);
    assert_eq!(h.flags, flags::NAN_SAMPLES | flags::PARTIAL_COVERAGE);
    let l = one(&t, &x, 0.0, 3.0, SignalModel::Linear, None);
    assert!((l.energy_j - 3.5).abs() < 1e-12, "{l:?}");
    let out = one(&t, &x, 5.0, 6.0, SignalModel::Hold, None);
    assert_eq!(out.flags, flags::NO_SAMPLES | flags::PARTIAL_COVERAGE);
    let edge = one(&t, &[1.0; 4], -1.0, 1.0, SignalModel::Hold, None);
    assert_eq!(edge.flags, flags::PARTIAL_COVERAGE);
    assert!((edge.coverage - 0.5).abs() < 1e-12);
}

#[test]
fn errors() {
    let e = integrate_timestamped(
        &[0.0, 1.0],
        &[1.0],
        &[],
        &[],
        ID,
        SignalModel::Hold,
        None,
        None,
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "timestamps and power must have the same length, got 2 timestamps and 1 samples"
    );
    let e = integrate_timestamped(
        &[0.0],
        &[1.0],
        &[],
        &[],
        ID,
        SignalModel::Hold,
        Some(0.0),
        None,
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "max_gap_s (0.0) must be finite and > 0"
    );
}
