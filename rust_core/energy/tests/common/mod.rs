//! Helpers shared by the integration tests: a tiny deterministic RNG and slow references.
#![allow(dead_code)]

use joulefarm_energy::SignalModel;

/// xorshift64*: deterministic, dependency-free randomness for tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Power at sample coordinate `u` (0..n) under the model, or None on an invalid sample.
/// Written from the definition, independently of the crate.
pub fn power_at(x: &[f64], u: f64, model: SignalModel) -> Option<f64> {
    let n = x.len();
    let i = u.floor() as usize;
    if u < 0.0 || i >= n || !x[i].is_finite() {
        return None;
    }
    match model {
        SignalModel::Hold => Some(x[i]),
        SignalModel::Linear => {
            let mid = i as f64 + 0.5;
            let j = if u < mid {
                i.checked_sub(1)
            } else {
                Some(i + 1)
            };
            let other = match j {
                Some(j) if j < n && x[j].is_finite() => x[j],
                _ => x[i],
            };
            let w = (u - mid).abs(); // distance to own midpoint, in samples (<= 0.5)
            Some(x[i] * (1.0 - w) + other * w)
        }
    }
}

/// Reference: (energy in W x samples, covered samples) over [a, b] in sample coordinates.
/// Cuts [a, b] at every sample boundary and midpoint, where power is linear under both models,
/// and integrates each piece as length x value at its centre: exact, slow, obviously right.
pub fn reference(x: &[f64], a: f64, b: f64, model: SignalModel) -> (f64, f64) {
    let mut cuts = vec![a];
    let mut k = (2.0 * a).floor() + 1.0;
    while k / 2.0 < b {
        cuts.push(k / 2.0);
        k += 1.0;
    }
    cuts.push(b);
    let (mut e, mut c) = (0.0, 0.0);
    for w in cuts.windows(2) {
        let h = w[1] - w[0];
        if h <= 0.0 {
            continue;
        }
        if let Some(p) = power_at(x, 0.5 * (w[0] + w[1]), model) {
            e += p * h;
            c += h;
        }
    }
    (e, c)
}
