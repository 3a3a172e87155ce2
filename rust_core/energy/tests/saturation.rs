//! A saturation level excludes samples exactly as NaN does, but flags `SATURATED`.
mod common;

use common::Rng;
use joulefarm_energy::{
    flags, fold_layers, idle_power, integrate_timestamped, integrate_uniform, ClockMap,
    FoldOptions, SignalModel, StreamingIntegrator, WindowStats,
};

const ID: ClockMap = ClockMap::IDENTITY;
const SAT: f64 = 4.9;

/// A trace with ~2% of samples at or above `SAT`, and the same trace with those set to NaN.
fn traces(rng: &mut Rng, n: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..n)
        .map(|_| {
            if rng.uniform(0.0, 1.0) < 0.02 {
                SAT + 0.5
            } else {
                rng.uniform(0.0, SAT)
            }
        })
        .map(|v| v as f32 as f64)
        .collect();
    let masked = x
        .iter()
        .map(|&v| if v >= SAT { f64::NAN } else { v })
        .collect();
    (x, masked)
}

/// Windows from short to longer than one summation block (4096 samples), at fs = 100 Hz.
fn windows(rng: &mut Rng, n: usize) -> (Vec<f64>, Vec<f64>) {
    let span = n as f64 / 100.0;
    let starts: Vec<f64> = (0..60).map(|_| rng.uniform(-0.1 * span, span)).collect();
    let ends = starts
        .iter()
        .enumerate()
        .map(|(i, s)| s + rng.uniform(0.0, span) * [0.0001, 0.01, 0.6][i % 3])
        .collect();
    (starts, ends)
}

/// `sat` must equal `nan` with `NAN_SAMPLES` renamed `SATURATED`.
fn assert_same_but_flag(sat: &[WindowStats], nan: &[WindowStats]) {
    let mut flagged = 0;
    for (a, b) in sat.iter().zip(nan) {
        let mut want = b.flags & !flags::NAN_SAMPLES;
        if b.flags & flags::NAN_SAMPLES != 0 {
            want |= flags::SATURATED;
            flagged += 1;
        }
        assert_eq!(a.flags, want);
        assert_eq!(a.samples, b.samples);
        if b.energy_j.is_nan() {
            assert!(a.energy_j.is_nan());
        } else {
            assert!((a.energy_j - b.energy_j).abs() <= 1e-12 * (1.0 + b.energy_j.abs()));
            assert!((a.coverage - b.coverage).abs() <= 1e-12);
        }
    }
    assert!(
        flagged > 10,
        "only {flagged} windows saw a saturated sample"
    );
}

#[test]
fn uniform_excludes_saturated_like_nan() {
    let mut rng = Rng::new(31);
    let (x, masked) = traces(&mut rng, 30_000);
    let (starts, ends) = windows(&mut rng, x.len());
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    for model in [SignalModel::Hold, SignalModel::Linear] {
        let nan = integrate_uniform(&masked, 0.0, 100.0, &starts, &ends, ID, model, None).unwrap();
        let sat = integrate_uniform(&x, 0.0, 100.0, &starts, &ends, ID, model, Some(SAT)).unwrap();
        assert_same_but_flag(&sat, &nan);
        let sat32 =
            integrate_uniform(&x32, 0.0, 100.0, &starts, &ends, ID, model, Some(SAT)).unwrap();
        assert_same_but_flag(&sat32, &nan);
        let idle_sat = idle_power(&x, 0.0, 100.0, &starts, &ends, ID, model, Some(SAT)).unwrap();
        let idle_nan = idle_power(&masked, 0.0, 100.0, &starts, &ends, ID, model, None).unwrap();
        assert!((idle_sat - idle_nan).abs() < 1e-12 * idle_nan);
    }
    // Without a level every sample counts.
    let all = integrate_uniform(
        &x,
        0.0,
        100.0,
        &[0.0],
        &[300.0],
        ID,
        SignalModel::Hold,
        None,
    );
    assert_eq!(all.unwrap()[0].flags, 0);
    // Exactly at the level is saturated.
    let at = integrate_uniform(
        &[1.0, 2.0],
        0.0,
        1.0,
        &[0.0],
        &[2.0],
        ID,
        SignalModel::Hold,
        Some(2.0),
    );
    let at = at.unwrap()[0];
    assert_eq!(at.flags, flags::SATURATED | flags::PARTIAL_COVERAGE);
    assert_eq!((at.energy_j, at.samples, at.coverage), (1.0, 1, 0.5));
}

#[test]
fn streaming_and_timestamped_exclude_saturated_like_nan() {
    let mut rng = Rng::new(32);
    let (x, masked) = traces(&mut rng, 30_000);
    let (starts, ends) = windows(&mut rng, x.len());
    let t: Vec<f64> = (0..x.len()).map(|i| i as f64 / 100.0).collect();
    for model in [SignalModel::Hold, SignalModel::Linear] {
        let nan = integrate_uniform(&masked, 0.0, 100.0, &starts, &ends, ID, model, None).unwrap();
        let mut s =
            StreamingIntegrator::new(100.0, 0.0, &starts, &ends, ID, model, Some(SAT)).unwrap();
        for chunk in x.chunks(777) {
            s.feed(chunk).unwrap();
        }
        assert_same_but_flag(&s.finish().unwrap(), &nan);

        let (nan_ts, q_nan) =
            integrate_timestamped(&t, &masked, &starts, &ends, ID, model, None, None).unwrap();
        let (sat_ts, q_sat) =
            integrate_timestamped(&t, &x, &starts, &ends, ID, model, None, Some(SAT)).unwrap();
        assert_same_but_flag(&sat_ts, &nan_ts);
        assert_eq!(q_sat.saturated_samples, q_nan.nan_samples);
        assert_eq!(q_sat.nan_samples, 0);
    }
}

#[test]
fn fold_skips_saturated_samples() {
    // Two layers alternating at random phases; the trace is exact, then a few samples clip.
    let mut rng = Rng::new(33);
    let (mut starts, mut ends, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    let mut trace = vec![1.0; 5000];
    let mut t: f64 = 0.5;
    while t < 4990.0 {
        for (layer, (d, p)) in [(0.3f64, 4.0f64), (0.5, 6.0)].into_iter().enumerate() {
            starts.push(t / 1000.0);
            ends.push((t + d) / 1000.0);
            ids.push(layer);
            let mut j = t.floor() as usize;
            while (j as f64) < t + d {
                trace[j] += (p - 1.0) * ((t + d).min(j as f64 + 1.0) - t.max(j as f64));
                j += 1;
            }
            t += d;
        }
        t += rng.uniform(0.2, 3.0);
    }
    let clip = 3.5;
    let clipped = trace.iter().filter(|&&v| v >= clip).count() as u64;
    assert!(clipped > 50);
    let options = FoldOptions {
        saturation_w: Some(clip),
        ..FoldOptions::default()
    };
    let r = fold_layers(&trace, 0.0, 1000.0, &starts, &ends, &ids, &options).unwrap();
    assert_eq!(
        (r.saturated_samples, r.excluded_samples),
        (clipped, clipped)
    );
    for (l, p) in r.layers.iter().zip([4.0, 6.0]) {
        assert_ne!(l.power.flags & flags::SATURATED, 0);
        assert!((l.power.power_w - p).abs() < 1e-9, "{:?}", l.power);
    }
    let bad = FoldOptions {
        saturation_w: Some(f64::NAN),
        ..FoldOptions::default()
    };
    let err = fold_layers(&trace, 0.0, 1000.0, &starts, &ends, &ids, &bad).unwrap_err();
    assert_eq!(err.to_string(), "saturation_w (NaN) must be finite");
    let err = integrate_uniform(
        &trace,
        0.0,
        1.0,
        &[0.0],
        &[1.0],
        ID,
        SignalModel::Hold,
        Some(f64::INFINITY),
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "saturation_w (inf) must be finite"
    );
}
