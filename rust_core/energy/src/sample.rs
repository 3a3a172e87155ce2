//! Sample value types. Traces come as float32 (meters, compact storage) or float64; every sum is
//! accumulated in f64 so a 1e9-sample float32 trace does not lose precision.

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

/// Sum of a slice in f64 with eight independent accumulators: lets the compiler vectorise the
/// loop and keeps the rounding error near O(sqrt(n)) on long traces. A NaN or infinite sample
/// makes the result non-finite, which callers use as a cheap "all valid" test.
#[inline]
pub(crate) fn sum_f64<T: Sample>(xs: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k].to_f64();
        }
    }
    let mut total =
        ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for &x in rest {
        total += x.to_f64();
    }
    total
}
