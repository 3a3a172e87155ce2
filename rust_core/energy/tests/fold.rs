mod common;

use common::Rng;
use joulefarm_energy::{flags, fold_layers, ClockMap, EnergyError, FoldOptions, FoldResult};

/// A synthetic run: `reps` inferences of layers with the given durations (samples) and powers,
/// at random phases, gaps of 0-0.05 samples between layers and 0.3-2 samples of idle between
/// inferences. Returns (trace, starts, ends, layer ids) in seconds at `fs`, windows on the
/// meter clock. The trace integrates the true piecewise-constant power exactly.
struct Run {
    fs: f64,
    trace: Vec<f64>,
    starts: Vec<f64>,
    ends: Vec<f64>,
    ids: Vec<usize>,
}

fn simulate(
    rng: &mut Rng,
    fs: f64,
    durations: &[f64],
    powers: &[f64],
    gap_w: f64,
    reps: usize,
) -> Run {
    let mut windows = Vec::new();
    let mut t = rng.uniform(0.5, 1.5);
    for _ in 0..reps {
        for (k, &d) in durations.iter().enumerate() {
            let d = d * rng.uniform(0.95, 1.05);
            windows.push((t, t + d, k));
            t += d + rng.uniform(0.0, 0.05);
        }
        t += rng.uniform(0.3, 2.0);
    }
    let n = t.ceil() as usize + 1;
    let mut trace = vec![gap_w; n];
    for &(a, b, k) in &windows {
        let mut j = a.floor() as usize;
        while (j as f64) < b {
            let o = b.min((j + 1) as f64) - a.max(j as f64);
            trace[j] += (powers[k] - gap_w) * o;
            j += 1;
        }
    }
    Run {
        fs,
        trace,
        starts: windows.iter().map(|w| w.0 / fs).collect(),
        ends: windows.iter().map(|w| w.1 / fs).collect(),
        ids: windows.iter().map(|w| w.2).collect(),
    }
}

impl Run {
    /// `fold_layers` over the whole run: the trace starts at 0, the windows are the run's.
    fn fold(&self, options: &FoldOptions) -> FoldResult {
        let (trace, fs) = (&self.trace, self.fs);
        fold_layers(trace, 0.0, fs, &self.starts, &self.ends, &self.ids, options).unwrap()
    }
}

fn layer_model(rng: &mut Rng, k: usize) -> (Vec<f64>, Vec<f64>) {
    // 20-600 us layers at 1 kHz: 0.02-0.6 samples.
    let durations = (0..k).map(|_| rng.uniform(0.02, 0.6)).collect();
    let powers = (0..k).map(|_| rng.uniform(3.0, 9.0)).collect();
    (durations, powers)
}

#[test]
fn recovers_layer_powers_without_noise() {
    let mut rng = Rng::new(3);
    let fs = 1000.0;
    let (durations, powers) = layer_model(&mut rng, 12);
    let run = simulate(&mut rng, fs, &durations, &powers, 2.5, 200);
    let r = run.fold(&FoldOptions::default());
    assert_eq!(r.unknowns, 13);
    assert_eq!(r.rank, 13);
    assert!(!r.rank_deficient());
    for (k, l) in r.layers.iter().enumerate() {
        assert!(
            (l.power.power_w - powers[k]).abs() < 1e-8,
            "layer {k}: {:?}",
            l.power
        );
        assert_eq!(l.calls, 200);
        assert_eq!(l.power.flags, 0);
        let want = powers[k] * l.mean_duration_s;
        assert!((l.energy_j - want).abs() < 1e-8 * want);
        assert!(l.energy_ci_low_j <= l.energy_j && l.energy_j <= l.energy_ci_high_j);
    }
    assert!((r.gap.power_w - 2.5).abs() < 1e-8);
    assert!(r.residual_std_w < 1e-9);
    assert_eq!(r.dof, r.equations - 13);
}

#[test]
fn known_gap_power_clock_map_and_float32() {
    let mut rng = Rng::new(5);
    let fs = 500.0;
    let (durations, powers) = layer_model(&mut rng, 5);
    let run = simulate(&mut rng, fs, &durations, &powers, 1.5, 100);
    // Agent clock = (meter - offset) / rate.
    let clock = ClockMap::new(0.25, 40.0);
    let starts: Vec<f64> = run.starts.iter().map(|&t| clock.to_agent(t)).collect();
    let ends: Vec<f64> = run.ends.iter().map(|&t| clock.to_agent(t)).collect();
    let options = FoldOptions {
        clock,
        gap_power_w: Some(1.5),
        ..FoldOptions::default()
    };
    let r = fold_layers(&run.trace, 0.0, fs, &starts, &ends, &run.ids, &options).unwrap();
    assert_eq!(r.unknowns, 5);
    assert_eq!(r.gap.power_w, 1.5);
    for (k, l) in r.layers.iter().enumerate() {
        assert!((l.power.power_w - powers[k]).abs() < 1e-7);
    }
    let x32: Vec<f32> = run.trace.iter().map(|&v| v as f32).collect();
    let r32 = fold_layers(&x32, 0.0, fs, &starts, &ends, &run.ids, &options).unwrap();
    for (k, l) in r32.layers.iter().enumerate() {
        assert!((l.power.power_w - powers[k]).abs() < 1e-3 * powers[k]);
    }
}

#[test]
fn noisy_estimates_fall_in_their_intervals() {
    let mut rng = Rng::new(11);
    let fs = 1000.0;
    let (durations, powers) = layer_model(&mut rng, 20);
    let mut run = simulate(&mut rng, fs, &durations, &powers, 2.0, 2000);
    for y in run.trace.iter_mut() {
        // Uniform noise with standard deviation 0.05 W.
        *y += rng.uniform(-1.0, 1.0) * 0.05 * 3f64.sqrt();
    }
    let r = run.fold(&FoldOptions::default());
    assert!(
        (r.residual_std_w - 0.05).abs() < 0.005,
        "{}",
        r.residual_std_w
    );
    let inside = r
        .layers
        .iter()
        .zip(&powers)
        .filter(|(l, &p)| l.power.ci_low_w <= p && p <= l.power.ci_high_w)
        .count();
    assert!(inside >= 17, "{inside} of 20 inside their 95% intervals");
    assert!((r.t_multiplier - 1.96).abs() < 0.01);
}

#[test]
fn coinciding_layers_are_unidentifiable_and_others_are_not() {
    let mut rng = Rng::new(7);
    let fs = 1000.0;
    let (durations, powers) = layer_model(&mut rng, 4);
    let mut run = simulate(&mut rng, fs, &durations, &powers, 2.0, 100);
    // Layer 4 duplicates every window of layer 2; layer 5 has no windows.
    let twins: Vec<usize> = (0..run.ids.len()).filter(|&w| run.ids[w] == 2).collect();
    for w in twins {
        run.starts.push(run.starts[w]);
        run.ends.push(run.ends[w]);
        run.ids.push(4);
    }
    let options = FoldOptions {
        layers: Some(6),
        ..FoldOptions::default()
    };
    let r = run.fold(&options);
    assert!(r.rank_deficient());
    assert_eq!(r.unknowns, 7);
    assert_eq!(r.rank, 5);
    for k in [2, 4] {
        assert_ne!(r.layers[k].power.flags & flags::UNIDENTIFIABLE, 0);
        assert!(r.layers[k].power.power_w.is_nan());
    }
    assert_eq!(r.layers[5].power.flags, flags::NO_SAMPLES);
    assert_eq!(r.layers[5].calls, 0);
    assert!(r.layers[5].mean_duration_s.is_nan());
    for k in [0, 1, 3] {
        assert_eq!(r.layers[k].power.flags, 0);
        assert!((r.layers[k].power.power_w - powers[k]).abs() < 1e-8);
    }
}

#[test]
fn invalid_samples_are_skipped_and_flagged() {
    let mut rng = Rng::new(9);
    let fs = 1000.0;
    let (durations, powers) = layer_model(&mut rng, 3);
    let mut run = simulate(&mut rng, fs, &durations, &powers, 2.0, 300);
    let w = run.starts.len() / 2;
    let j = (run.starts[w] * fs).floor() as usize;
    run.trace[j] = f64::NAN;
    // Cut the trace inside the first window: that window is only partly on the trace.
    let cut = (run.starts[0] * fs).floor() as usize + 1;
    let t0 = cut as f64 / fs;
    let r = fold_layers(
        &run.trace[cut..],
        t0,
        fs,
        &run.starts,
        &run.ends,
        &run.ids,
        &FoldOptions::default(),
    )
    .unwrap();
    assert_eq!(r.excluded_samples, 1);
    assert_ne!(r.layers[run.ids[w]].power.flags & flags::NAN_SAMPLES, 0);
    assert_ne!(
        r.layers[run.ids[0]].power.flags & flags::PARTIAL_COVERAGE,
        0
    );
    for (k, l) in r.layers.iter().enumerate() {
        assert!((l.power.power_w - powers[k]).abs() < 1e-8);
    }
}

#[test]
fn errors_name_the_argument() {
    let x = [1.0; 10];
    let o = FoldOptions::default();
    let err = |r: Result<FoldResult, EnergyError>| r.unwrap_err().to_string();
    assert_eq!(
        err(fold_layers(
            &x,
            0.0,
            1.0,
            &[0.0, 1.0],
            &[0.5, 1.5],
            &[0],
            &o
        )),
        "layer_ids must have one entry per window, got 1 layer ids and 2 windows"
    );
    // The error for one window [0, 0.5] of layer `id` under `options`.
    let one_window = |id: usize, options: FoldOptions| {
        err(fold_layers(&x, 0.0, 1.0, &[0.0], &[0.5], &[id], &options))
    };
    let few = FoldOptions {
        layers: Some(2),
        ..o
    };
    assert_eq!(
        one_window(2, few),
        "window 0: layer id 2 is out of range (layers = 2)"
    );
    let bad = FoldOptions {
        confidence: 1.0,
        ..o
    };
    assert_eq!(one_window(0, bad), "confidence (1.0) must be in (0, 1)");
    let huge = FoldOptions {
        layers: Some(5000),
        ..o
    };
    assert!(one_window(0, huge).contains("at most 2048"));
    // No windows at all: an empty, valid result.
    let r = fold_layers(&x, 0.0, 1.0, &[], &[], &[], &o).unwrap();
    assert_eq!((r.layers.len(), r.equations, r.rank), (0, 0, 0));
    assert_ne!(r.gap.flags & flags::NO_SAMPLES, 0);
}
