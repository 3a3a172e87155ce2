//! Sample value types and the summation kernels. Traces come as float32 (meters, compact storage)
//! or float64; every sum is accumulated in f64 so a 1e9-sample float32 trace does not lose
//! precision. A trace is read through [`PowerSeries`]: a slice of power samples, or a current
//! and a voltage channel multiplied sample by sample on the fly ([`CurrentVoltage`]).

use crate::error::EnergyError;

/// A power sample that can be widened to f64.
pub trait Sample: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
}

impl Sample for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

impl Sample for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

/// A uniformly sampled power trace, read sample by sample or summed over blocks.
pub trait PowerSeries: Copy + Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Power of sample `i` in watts (panics when `i >= len`).
    fn at(&self, i: usize) -> f64;

    /// Power of sample `i`, or None past either end.
    #[inline]
    fn get(&self, i: usize) -> Option<f64> {
        (i < self.len()).then(|| self.at(i))
    }

    /// Sum of samples `k..m` (as [`sum_f64`]).
    fn sum(&self, k: usize, m: usize) -> f64;

    /// Sum and maximum of samples `k..m` (as [`sum_max_f64`]).
    fn sum_max(&self, k: usize, m: usize) -> (f64, f64);
}

impl<T: Sample> PowerSeries for &[T] {
    #[inline]
    fn len(&self) -> usize {
        <[T]>::len(self)
    }

    #[inline]
    fn at(&self, i: usize) -> f64 {
        self[i].to_f64()
    }

    #[inline]
    fn sum(&self, k: usize, m: usize) -> f64 {
        sum_f64(&self[k..m])
    }

    #[inline]
    fn sum_max(&self, k: usize, m: usize) -> (f64, f64) {
        sum_max_f64(&self[k..m])
    }
}

/// Power = current x voltage, multiplied per sample when read: no power array is allocated.
/// Each product is formed in f64 (exact for float32 channels).
#[derive(Debug, Clone, Copy)]
pub struct CurrentVoltage<'a, A: Sample, B: Sample> {
    current_a: &'a [A],
    voltage_v: &'a [B],
}

impl<'a, A: Sample, B: Sample> CurrentVoltage<'a, A, B> {
    /// The two channels must have the same length.
    pub fn new(current_a: &'a [A], voltage_v: &'a [B]) -> Result<Self, EnergyError> {
        if current_a.len() != voltage_v.len() {
            return Err(EnergyError::NoData(format!(
                "current and voltage must have the same length, got {} current and {} voltage \
                 samples",
                current_a.len(),
                voltage_v.len()
            )));
        }
        Ok(CurrentVoltage {
            current_a,
            voltage_v,
        })
    }
}

impl<A: Sample, B: Sample> PowerSeries for CurrentVoltage<'_, A, B> {
    #[inline]
    fn len(&self) -> usize {
        self.current_a.len()
    }

    #[inline]
    fn at(&self, i: usize) -> f64 {
        self.current_a[i].to_f64() * self.voltage_v[i].to_f64()
    }

    #[inline]
    fn sum(&self, k: usize, m: usize) -> f64 {
        let (a, b) = (&self.current_a[k..m], &self.voltage_v[k..m]);
        dispatch(|| product_kernel::<false, A, B>(a, b)).0
    }

    #[inline]
    fn sum_max(&self, k: usize, m: usize) -> (f64, f64) {
        let (a, b) = (&self.current_a[k..m], &self.voltage_v[k..m]);
        dispatch(|| product_kernel::<true, A, B>(a, b))
    }
}

/// Independent accumulators in the kernels: enough to hide the latency of the f64 adds with
/// 128-bit vectors (8 chains) and 256-bit vectors (4 chains).
const LANES: usize = 16;

/// Runs `f` compiled for AVX2 when the CPU has it (x86-64), else as is. The kernels are
/// `inline(always)`, so they are generated inside the AVX2 function and vectorised for it.
#[inline(always)]
fn dispatch<R, F: FnOnce() -> R>(f: F) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<R, F: FnOnce() -> R>(f: F) -> R {
    f()
}

/// Sum of a slice in f64 with [`LANES`] independent accumulators: lets the compiler vectorise
/// the loop and keeps the rounding error near O(sqrt(n)) on long traces (callers sum blocks of
/// a few thousand samples, so each accumulator adds a few hundred terms). A NaN or infinite
/// sample makes the result non-finite, which callers use as a cheap "all valid" test.
///
/// Every variant (portable, AVX2, the float32 intrinsics) adds in the same order without FMA,
/// so they give bit-identical results.
#[inline]
pub(crate) fn sum_f64<T: Sample>(xs: &[T]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { sum_f64_avx2(xs) };
        }
    }
    slice_kernel::<false, T>(xs).0
}

/// Sum (as [`sum_f64`]) and maximum of a slice, for traces with a saturation level: a block is
/// valid when the sum is finite and the maximum is below the level. The maximum ignores NaN
/// (the sum catches it); NEG_INFINITY for an empty slice.
#[inline]
pub(crate) fn sum_max_f64<T: Sample>(xs: &[T]) -> (f64, f64) {
    dispatch(|| slice_kernel::<true, T>(xs))
}

/// The float32 sum with explicit 256-bit conversions and adds: LLVM's auto-vectoriser keeps
/// this loop at 128 bits, which halves the in-cache throughput.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_f64_avx2<T: Sample>(xs: &[T]) -> f64 {
    use std::any::TypeId;
    use std::arch::x86_64::*;
    if TypeId::of::<T>() != TypeId::of::<f32>() {
        return slice_kernel::<false, T>(xs).0;
    }
    // SAFETY: T is f32 (checked above), so the slice has the same layout as [f32].
    let xs: &[f32] = std::slice::from_raw_parts(xs.as_ptr().cast::<f32>(), xs.len());
    // Four 4-lane accumulators: lane l of acc[j] is accumulator 4j + l of `slice_kernel`, so
    // the additions happen in the same order and the result is bit-identical.
    let mut acc = [_mm256_setzero_pd(); 4];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        let p = c.as_ptr();
        for (j, a) in acc.iter_mut().enumerate() {
            let x = _mm256_cvtps_pd(_mm_loadu_ps(p.add(4 * j)));
            *a = _mm256_add_pd(*a, x);
        }
    }
    let mut lanes = [0.0f64; LANES];
    for (j, a) in acc.iter().enumerate() {
        _mm256_storeu_pd(lanes.as_mut_ptr().add(4 * j), *a);
    }
    finish_rows(
        lanes,
        [f64::NEG_INFINITY; LANES],
        rest.iter().map(|x| x.to_f64()),
    )
    .0
}

#[inline(always)]
fn slice_kernel<const MAX: bool, T: Sample>(xs: &[T]) -> (f64, f64) {
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    let rows = chunks.map(|c| std::array::from_fn(|k| c[k].to_f64()));
    fold_rows::<MAX>(rows, rest.iter().map(|x| x.to_f64()))
}

#[inline(always)]
fn product_kernel<const MAX: bool, A: Sample, B: Sample>(a: &[A], b: &[B]) -> (f64, f64) {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest = ca.remainder().iter().zip(cb.remainder());
    let rows = ca
        .zip(cb)
        .map(|(x, y)| std::array::from_fn(|k| x[k].to_f64() * y[k].to_f64()));
    fold_rows::<MAX>(rows, rest.map(|(x, y)| x.to_f64() * y.to_f64()))
}

/// Adds rows of [`LANES`] values into as many accumulators (and, with `MAX`, tracks the
/// maximum), then reduces them.
#[inline(always)]
fn fold_rows<const MAX: bool>(
    rows: impl Iterator<Item = [f64; LANES]>,
    rest: impl Iterator<Item = f64>,
) -> (f64, f64) {
    let mut acc = [0.0f64; LANES];
    let mut top = [f64::NEG_INFINITY; LANES];
    for row in rows {
        for k in 0..LANES {
            acc[k] += row[k];
            if MAX {
                // A compare-and-select (not f64::max) vectorises to one max instruction.
                top[k] = if row[k] > top[k] { row[k] } else { top[k] };
            }
        }
    }
    finish_rows(acc, top, rest)
}

/// Pairwise reduction of the accumulators, then the tail.
#[inline(always)]
fn finish_rows(
    mut acc: [f64; LANES],
    top: [f64; LANES],
    rest: impl Iterator<Item = f64>,
) -> (f64, f64) {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for k in 0..width {
            acc[k] += acc[k + width];
        }
    }
    let (mut total, mut max) = (acc[0], f64::NEG_INFINITY);
    for v in top {
        if v > max {
            max = v;
        }
    }
    for v in rest {
        total += v;
        if v > max {
            max = v;
        }
    }
    (total, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_length_and_flags_nan() {
        for n in 0..100usize {
            let xs: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.25).collect();
            let exact: f64 = xs.iter().map(|&x| x as f64).sum();
            assert_eq!(sum_f64(&xs), exact, "n = {n}");
            assert_eq!(sum_f64(&xs), slice_kernel::<false, f32>(&xs).0);
        }
        // Awkward values: the run-time dispatched kernels must agree bit for bit.
        let mut state = 12345u32;
        let noisy: Vec<f32> = (0..10_007)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 * 1e-5 + 0.1
            })
            .collect();
        let exact: f64 = noisy.iter().map(|&x| x as f64).sum();
        let portable = slice_kernel::<false, f32>(&noisy).0;
        assert_eq!(sum_f64(&noisy).to_bits(), portable.to_bits());
        assert!((sum_f64(&noisy) - exact).abs() <= 1e-12 * exact);
        for n in [0usize, 1, 15, 16, 17, 100, 10_007] {
            let (sum, max) = sum_max_f64(&noisy[..n]);
            assert_eq!(sum.to_bits(), sum_f64(&noisy[..n]).to_bits());
            let want = noisy[..n]
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            assert_eq!(max, want, "n = {n}");
        }
        let mut xs = vec![1.0f64; 37];
        xs[20] = f64::NAN;
        assert!(!sum_f64(&xs).is_finite());
        assert!(!sum_max_f64(&xs).0.is_finite());
        xs[20] = f64::INFINITY;
        assert!(!sum_f64(&xs).is_finite());
    }

    #[test]
    fn current_times_voltage() {
        let i: Vec<f32> = (0..1000).map(|k| (k % 13) as f32 * 0.01).collect();
        let v: Vec<f64> = (0..1000).map(|k| 5.0 + (k % 3) as f64 * 0.1).collect();
        let p: Vec<f64> = i.iter().zip(&v).map(|(&a, &b)| a as f64 * b).collect();
        let iv = CurrentVoltage::new(&i, &v).unwrap();
        let slice = p.as_slice();
        assert_eq!(iv.len(), 1000);
        assert_eq!(iv.at(17), p[17]);
        assert_eq!(iv.get(1000), None);
        for (k, m) in [(0, 1000), (3, 3), (5, 21), (100, 999)] {
            assert_eq!(iv.sum(k, m).to_bits(), slice.sum(k, m).to_bits());
            assert_eq!(iv.sum_max(k, m), slice.sum_max(k, m));
        }
        let err = CurrentVoltage::new(&i[..3], &v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "current and voltage must have the same length, got 3 current and 1000 voltage samples"
        );
    }
}
