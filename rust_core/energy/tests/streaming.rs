mod common;

use common::Rng;
use joulefarm_energy::{integrate_uniform, ClockMap, SignalModel, StreamingIntegrator};

#[test]
fn chunked_equals_one_shot() {
    let mut rng = Rng::new(17);
    for trial in 0..50 {
        let n = 1 + (rng.next_u64() % 3000) as usize;
        let x: Vec<f64> = (0..n)
            .map(|_| {
                if rng.uniform(0.0, 1.0) < 0.01 {
                    f64::NAN
                } else {
                    rng.uniform(0.0, 5.0)
                }
            })
            // Every third trial streams float32 chunks: use values exact in f32.
            .map(|v| if trial % 3 == 0 { v as f32 as f64 } else { v })
            .collect();
        let fs = 1000.0;
        let t0 = rng.uniform(-1.0, 1.0);
        let clock = ClockMap::new(rng.uniform(-0.5, 0.5), 20.0);
        let k = 1 + (rng.next_u64() % 40) as usize;
        let span = n as f64 / fs;
        let starts: Vec<f64> = (0..k)
            .map(|_| rng.uniform(-0.5 * span, 1.5 * span))
            .collect();
        let ends: Vec<f64> = starts.iter().map(|s| s + rng.uniform(0.0, span)).collect();
        let model = if trial % 2 == 0 {
            SignalModel::Hold
        } else {
            SignalModel::Linear
        };
        let want = integrate_uniform(&x, t0, fs, &starts, &ends, clock, model, None).unwrap();
        let mut s = StreamingIntegrator::new(fs, t0, &starts, &ends, clock, model, None).unwrap();
        let mut i = 0;
        while i < n {
            let len = 1 + (rng.next_u64() % 700) as usize;
            let j = (i + len).min(n);
            if trial % 3 == 0 {
                let chunk: Vec<f32> = x[i..j].iter().map(|&v| v as f32).collect();
                s.feed(&chunk).unwrap();
            } else {
                s.feed(&x[i..j]).unwrap();
            }
            i = j;
        }
        assert_eq!(s.samples_seen(), n as u64);
        let got = s.finish().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.flags, w.flags, "trial {trial}");
            assert_eq!(g.samples, w.samples, "trial {trial}");
            if w.energy_j.is_nan() {
                assert!(g.energy_j.is_nan());
            } else {
                assert!((g.energy_j - w.energy_j).abs() <= 1e-9 * (1.0 + w.energy_j.abs()));
                assert!((g.coverage - w.coverage).abs() <= 1e-9);
            }
        }
    }
}

#[test]
fn feed_after_finish_is_an_error() {
    let mut s = StreamingIntegrator::new(
        1.0,
        0.0,
        &[0.0],
        &[1.0],
        ClockMap::IDENTITY,
        SignalModel::Hold,
        None,
    )
    .unwrap();
    s.feed(&[1.0f32, 2.0]).unwrap();
    let w = s.finish().unwrap();
    assert_eq!(w[0].energy_j, 1.0);
    assert!(s
        .feed(&[1.0f64])
        .unwrap_err()
        .to_string()
        .contains("after finish()"));
    assert!(s.finish().unwrap_err().to_string().contains("twice"));
}
