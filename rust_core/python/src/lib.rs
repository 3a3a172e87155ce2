//! `joulefarm._core`: a thin PyO3 layer over the `joulefarm-energy` crate.
//!
//! Arrays are borrowed from numpy without copying when they are contiguous float64/float32;
//! anything else is converted once with `numpy.asarray`. Every computation runs with the GIL
//! released (`compute`), and every crate error becomes `TraceError` (`From<EnergyError>`).
//! Arguments that several functions share are read by one helper each (`Windows`, `Reading`),
//! in the order that decides which error a caller sees.

use joulefarm_energy::{self as energy, flags, ClockMap, EnergyError, SignalModel, WindowStats};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

create_exception!(
    _core,
    TraceError,
    PyValueError,
    "Invalid trace, window or parameter passed to a joulefarm energy function."
);

/// The one place where crate errors become Python exceptions.
struct CoreError(EnergyError);

impl From<EnergyError> for CoreError {
    fn from(e: EnergyError) -> Self {
        CoreError(e)
    }
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        TraceError::new_err(e.0.to_string())
    }
}

/// Runs `f` with the GIL released; its error becomes `TraceError`. Every computation goes
/// through here.
fn compute<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: Send + FnOnce() -> Result<T, EnergyError>,
    T: Send,
{
    Ok(py.detach(f).map_err(CoreError::from)?)
}

/// A 1-D float array from numpy: borrowed (zero copy) when contiguous, copied once otherwise
/// (a strided view cannot be handed to the crate as a slice).
enum Floats<'py, T: numpy::Element> {
    Borrowed(PyReadonlyArray1<'py, T>),
    Owned(Vec<T>),
}

impl<'py, T: numpy::Element + Copy> Floats<'py, T> {
    fn new(array: PyReadonlyArray1<'py, T>) -> Self {
        if array.as_slice().is_ok() {
            Floats::Borrowed(array)
        } else {
            Floats::Owned(array.as_array().iter().copied().collect())
        }
    }

    fn slice(&self) -> &[T] {
        match self {
            Floats::Borrowed(a) => a.as_slice().expect("checked contiguous in Floats::new"),
            Floats::Owned(v) => v,
        }
    }
}

fn check_1d(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(arr) = obj.cast::<numpy::PyUntypedArray>() {
        if arr.ndim() != 1 {
            return Err(TraceError::new_err(format!(
                "{name} must be 1-dimensional, got {} dimensions",
                arr.ndim()
            )));
        }
    }
    Ok(())
}

/// Converts anything array-like to a 1-D float64 array (no copy when it already is one).
fn as_f64<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Floats<'py, f64>> {
    check_1d(name, obj)?;
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, f64>>() {
        return Ok(Floats::new(a));
    }
    let np = PyModule::import(obj.py(), "numpy")?;
    let converted = np.call_method1("asarray", (obj, "float64")).map_err(|e| {
        TraceError::new_err(format!(
            "{name} cannot be converted to a float64 array: {e}"
        ))
    })?;
    check_1d(name, &converted)?;
    Ok(Floats::new(
        converted.extract::<PyReadonlyArray1<'py, f64>>()?,
    ))
}

/// Power trace: float32 and float64 are used as they are; other inputs become float64.
enum Power<'py> {
    F32(Floats<'py, f32>),
    F64(Floats<'py, f64>),
}

fn as_power<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Power<'py>> {
    as_channel("power", obj)
}

/// A sample channel (power, current, voltage) named `name` in error messages.
fn as_channel<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Power<'py>> {
    check_1d(name, obj)?;
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, f32>>() {
        return Ok(Power::F32(Floats::new(a)));
    }
    Ok(Power::F64(as_f64(name, obj)?))
}

/// Calls `$f` with the power slice at its native type.
macro_rules! with_power {
    ($power:expr, |$p:ident| $body:expr) => {
        match &$power {
            Power::F32(a) => {
                let $p: &[f32] = a.slice();
                $body
            }
            Power::F64(a) => {
                let $p: &[f64] = a.slice();
                $body
            }
        }
    };
}

/// A dict of `key => value` entries in this order (any value PyO3 converts); `?` on failure.
macro_rules! py_dict {
    ($py:expr, { $($key:literal => $value:expr),+ $(,)? }) => {{
        let dict = PyDict::new($py);
        $(dict.set_item($key, $value)?;)+
        dict
    }};
}

/// One output column: a numpy array holding `f` of each item.
fn column<'py, T, E: numpy::Element>(
    py: Python<'py>,
    items: &[T],
    f: impl Fn(&T) -> E,
) -> Bound<'py, PyArray1<E>> {
    items.iter().map(f).collect::<Vec<E>>().into_pyarray(py)
}

/// Window bounds on the agent clock (`starts`/`ends`, or busy intervals), as float64.
struct Windows<'py> {
    starts: Floats<'py, f64>,
    ends: Floats<'py, f64>,
}

impl<'py> Windows<'py> {
    /// The `starts` and `ends` arguments.
    fn read(starts: &Bound<'py, PyAny>, ends: &Bound<'py, PyAny>) -> PyResult<Self> {
        Self::read_as(("starts", "ends"), starts, ends)
    }

    /// The `busy_starts` and `busy_ends` arguments.
    fn read_busy(starts: &Bound<'py, PyAny>, ends: &Bound<'py, PyAny>) -> PyResult<Self> {
        Self::read_as(("busy_starts", "busy_ends"), starts, ends)
    }

    fn read_as(
        names: (&str, &str),
        starts: &Bound<'py, PyAny>,
        ends: &Bound<'py, PyAny>,
    ) -> PyResult<Self> {
        let starts = as_f64(names.0, starts)?;
        let ends = as_f64(names.1, ends)?;
        Ok(Windows { starts, ends })
    }

    fn bounds(&self) -> (&[f64], &[f64]) {
        (self.starts.slice(), self.ends.slice())
    }
}

/// `offset_s`, `drift_ppm`, `model` and `saturation_w`: where the windows fall on the meter
/// clock and how samples are read.
#[derive(Clone, Copy)]
struct Reading {
    clock: ClockMap,
    model: SignalModel,
    saturation_w: Option<f64>,
}

impl Reading {
    /// Parses `model`; callers read it before the arrays, so a bad model is reported first.
    fn parse(
        offset_s: f64,
        drift_ppm: f64,
        model: &str,
        saturation_w: Option<f64>,
    ) -> PyResult<Self> {
        Ok(Reading {
            clock: ClockMap::new(offset_s, drift_ppm),
            model: model.parse::<SignalModel>().map_err(CoreError::from)?,
            saturation_w,
        })
    }
}

/// The arguments of a window integration over a uniform trace, read and checked.
struct UniformWindows<'py> {
    power: Power<'py>,
    sample_rate_hz: f64,
    t0: f64,
    windows: Windows<'py>,
    reading: Reading,
}

impl UniformWindows<'_> {
    fn integrate(&self, py: Python<'_>) -> PyResult<Vec<WindowStats>> {
        let (fs, t0, r) = (self.sample_rate_hz, self.t0, self.reading);
        let (s, e) = self.windows.bounds();
        with_power!(self.power, |p| compute(py, || {
            energy::integrate_uniform(p, t0, fs, s, e, r.clock, r.model, r.saturation_w)
        }))
    }

    fn idle_power(&self, py: Python<'_>) -> PyResult<f64> {
        let (fs, t0, r) = (self.sample_rate_hz, self.t0, self.reading);
        let (s, e) = self.windows.bounds();
        with_power!(self.power, |p| compute(py, || {
            energy::idle_power(p, t0, fs, s, e, r.clock, r.model, r.saturation_w)
        }))
    }
}

/// Declares a Python function with the arguments of `integrate` (names, order, defaults),
/// written once for the functions that share them; `$body` gets them as `$args`, a
/// `UniformWindows`.
macro_rules! uniform_windows_function {
    (
        $(#[$attr:meta])*
        fn $name:ident<$lt:lifetime>($py:ident, $args:ident) -> $ret:ty $body:block
    ) => {
        $(#[$attr])*
        #[pyfunction]
        #[pyo3(signature = (power, sample_rate_hz, starts, ends, t0=0.0, offset_s=0.0, drift_ppm=0.0, model="hold", saturation_w=None))]
        #[allow(clippy::too_many_arguments)]
        fn $name<$lt>(
            $py: Python<$lt>,
            power: &Bound<$lt, PyAny>,
            sample_rate_hz: f64,
            starts: &Bound<$lt, PyAny>,
            ends: &Bound<$lt, PyAny>,
            t0: f64,
            offset_s: f64,
            drift_ppm: f64,
            model: &str,
            saturation_w: Option<f64>,
        ) -> $ret {
            let reading = Reading::parse(offset_s, drift_ppm, model, saturation_w)?;
            let $args = UniformWindows {
                power: as_power(power)?,
                sample_rate_hz,
                t0,
                windows: Windows::read(starts, ends)?,
                reading,
            };
            $body
        }
    };
}

uniform_windows_function! {
    /// Energy in joules of each window `[starts[k], ends[k]]` (agent clock, seconds).
    fn integrate<'py>(py, args) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(column(py, &args.integrate(py)?, |w| w.energy_j))
    }
}

uniform_windows_function! {
    /// Per-window energy, mean power, sample count, coverage and flags.
    fn integrate_windows<'py>(py, args) -> PyResult<Bound<'py, PyDict>> {
        stats_to_dict(py, &args.integrate(py)?)
    }
}

uniform_windows_function! {
    /// Mean power in watts over the idle windows (total energy / total covered duration).
    fn idle_power<'py>(py, args) -> PyResult<f64> {
        args.idle_power(py)
    }
}

/// The columns of `integrate_windows`.
fn stats_to_dict<'py>(py: Python<'py>, stats: &[WindowStats]) -> PyResult<Bound<'py, PyDict>> {
    Ok(py_dict!(py, {
        "energy_j" => column(py, stats, |w| w.energy_j),
        "mean_power_w" => column(py, stats, |w| w.mean_power_w),
        "samples" => column(py, stats, |w| w.samples as i64),
        "coverage" => column(py, stats, |w| w.coverage),
        "flags" => column(py, stats, |w| w.flags),
    }))
}

/// `integrate_windows` over power = current x voltage, multiplied per sample on the fly.
#[pyfunction]
#[pyo3(signature = (current_a, voltage_v, sample_rate_hz, starts, ends, t0=0.0, offset_s=0.0, drift_ppm=0.0, model="hold", saturation_w=None))]
#[allow(clippy::too_many_arguments)]
fn integrate_windows_iv<'py>(
    py: Python<'py>,
    current_a: &Bound<'py, PyAny>,
    voltage_v: &Bound<'py, PyAny>,
    sample_rate_hz: f64,
    starts: &Bound<'py, PyAny>,
    ends: &Bound<'py, PyAny>,
    t0: f64,
    offset_s: f64,
    drift_ppm: f64,
    model: &str,
    saturation_w: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let r = Reading::parse(offset_s, drift_ppm, model, saturation_w)?;
    let current = as_channel("current_a", current_a)?;
    let voltage = as_channel("voltage_v", voltage_v)?;
    let windows = Windows::read(starts, ends)?;
    let (s, e) = windows.bounds();
    let fs = sample_rate_hz;
    let stats = with_power!(current, |i| with_power!(voltage, |v| compute(py, || {
        energy::CurrentVoltage::new(i, v).and_then(|iv| {
            energy::integrate_series(iv, t0, fs, s, e, r.clock, r.model, r.saturation_w)
        })
    })))?;
    stats_to_dict(py, &stats)
}

/// Offset (meter = agent + offset_s) that best aligns the busy intervals with the trace.
#[pyfunction]
#[pyo3(signature = (power, sample_rate_hz, busy_starts, busy_ends, t0=0.0, max_offset_s=0.05))]
fn align_offset<'py>(
    py: Python<'py>,
    power: &Bound<'py, PyAny>,
    sample_rate_hz: f64,
    busy_starts: &Bound<'py, PyAny>,
    busy_ends: &Bound<'py, PyAny>,
    t0: f64,
    max_offset_s: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let power = as_power(power)?;
    let busy = Windows::read_busy(busy_starts, busy_ends)?;
    let (s, e) = busy.bounds();
    let found = with_power!(power, |p| compute(py, || {
        energy::align_offset(p, t0, sample_rate_hz, s, e, max_offset_s)
    }))?;
    Ok(py_dict!(py, {
        "offset_s" => found.offset_s,
        "correlation" => found.correlation,
        "residual_w" => found.residual_w,
    }))
}

/// Energy per window of a trace with explicit timestamps; returns (columns, quality).
#[pyfunction]
#[pyo3(signature = (t, power, starts, ends, offset_s=0.0, drift_ppm=0.0, model="hold", max_gap_s=None, saturation_w=None))]
#[allow(clippy::too_many_arguments)]
fn integrate_timestamped<'py>(
    py: Python<'py>,
    t: &Bound<'py, PyAny>,
    power: &Bound<'py, PyAny>,
    starts: &Bound<'py, PyAny>,
    ends: &Bound<'py, PyAny>,
    offset_s: f64,
    drift_ppm: f64,
    model: &str,
    max_gap_s: Option<f64>,
    saturation_w: Option<f64>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let r = Reading::parse(offset_s, drift_ppm, model, saturation_w)?;
    let t = as_f64("t", t)?;
    let power = as_power(power)?;
    let windows = Windows::read(starts, ends)?;
    let (ts, (s, e)) = (t.slice(), windows.bounds());
    let (stats, q) = with_power!(power, |p| compute(py, || {
        energy::integrate_timestamped(ts, p, s, e, r.clock, r.model, max_gap_s, r.saturation_w)
    }))?;
    let quality = py_dict!(py, {
        "samples" => q.samples,
        "nan_samples" => q.nan_samples,
        "saturated_samples" => q.saturated_samples,
        "non_monotonic" => q.non_monotonic,
        "gaps" => q.gaps,
        "gap_s" => q.gap_s,
        "max_interval_s" => q.max_interval_s,
        "mean_interval_s" => q.mean_interval_s,
        "start_s" => q.start_s,
        "end_s" => q.end_s,
    });
    Ok((stats_to_dict(py, &stats)?, quality))
}

/// Offset and drift from two busy patterns (before / after `split_at`, agent clock).
#[pyfunction]
#[pyo3(signature = (power, sample_rate_hz, busy_starts, busy_ends, t0=0.0, max_offset_s=0.05, split_at=None))]
#[allow(clippy::too_many_arguments)]
fn align_clock<'py>(
    py: Python<'py>,
    power: &Bound<'py, PyAny>,
    sample_rate_hz: f64,
    busy_starts: &Bound<'py, PyAny>,
    busy_ends: &Bound<'py, PyAny>,
    t0: f64,
    max_offset_s: f64,
    split_at: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let power = as_power(power)?;
    let busy = Windows::read_busy(busy_starts, busy_ends)?;
    let (s, e) = busy.bounds();
    // Default split: halfway through the whole busy pattern.
    let split = split_at.unwrap_or_else(|| energy::pattern_centre(s, e));
    let fit = with_power!(power, |p| compute(py, || {
        energy::align_clock(p, t0, sample_rate_hz, s, e, split, max_offset_s)
    }))?;
    let anchors = fit.anchors;
    Ok(py_dict!(py, {
        "offset_s" => fit.offset_s,
        "drift_ppm" => fit.drift_ppm,
        "anchor_times_s" => anchors.map(|(c, _)| c).to_vec(),
        "anchor_offsets_s" => anchors.map(|(_, a)| a.offset_s).to_vec(),
        "correlation" => anchors.map(|(_, a)| a.correlation).to_vec(),
        "residual_w" => anchors.map(|(_, a)| a.residual_w).to_vec(),
    }))
}

/// Block min/max/mean of a trace, for plotting.
#[pyfunction]
#[pyo3(signature = (power, factor))]
fn decimate_minmax<'py>(
    py: Python<'py>,
    power: &Bound<'py, PyAny>,
    factor: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let power = as_power(power)?;
    let d = with_power!(power, |p| compute(py, || energy::decimate_minmax(
        p, factor
    )))?;
    Ok(py_dict!(py, {
        "min" => d.min.into_pyarray(py),
        "max" => d.max.into_pyarray(py),
        "mean" => d.mean.into_pyarray(py),
    }))
}

/// Layer ids from anything array-like: a 1-D array of non-negative integers.
fn as_layer_ids(obj: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    check_1d("layer_ids", obj)?;
    let np = PyModule::import(obj.py(), "numpy")?;
    let array = np.call_method1("asarray", (obj,))?;
    check_1d("layer_ids", &array)?;
    if array.getattr("size")?.extract::<usize>()? == 0 {
        return Ok(Vec::new());
    }
    let kind: String = array.getattr("dtype")?.getattr("kind")?.extract()?;
    if kind != "i" && kind != "u" {
        let dtype = array.getattr("dtype")?.str()?;
        return Err(TraceError::new_err(format!(
            "layer_ids must be integers, got dtype {dtype}"
        )));
    }
    let ids = array.call_method1("astype", ("int64",))?;
    let ids = ids.extract::<PyReadonlyArray1<'_, i64>>()?;
    ids.as_array()
        .iter()
        .enumerate()
        .map(|(w, &id)| {
            usize::try_from(id)
                .map_err(|_| TraceError::new_err(format!("window {w}: layer id {id} is negative")))
        })
        .collect()
}

/// Per-layer mean power from many inferences whose layers are shorter than a sample
/// (equivalent-time folding); per-layer columns plus scalar fit statistics.
#[pyfunction]
#[pyo3(signature = (power, sample_rate_hz, starts, ends, layer_ids, t0=0.0, offset_s=0.0, drift_ppm=0.0, gap_power_w=None, n_layers=None, confidence=0.95, saturation_w=None))]
#[allow(clippy::too_many_arguments)]
fn fold_layers<'py>(
    py: Python<'py>,
    power: &Bound<'py, PyAny>,
    sample_rate_hz: f64,
    starts: &Bound<'py, PyAny>,
    ends: &Bound<'py, PyAny>,
    layer_ids: &Bound<'py, PyAny>,
    t0: f64,
    offset_s: f64,
    drift_ppm: f64,
    gap_power_w: Option<f64>,
    n_layers: Option<usize>,
    confidence: f64,
    saturation_w: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let power = as_power(power)?;
    let windows = Windows::read(starts, ends)?;
    let ids = as_layer_ids(layer_ids)?;
    let options = energy::FoldOptions {
        clock: ClockMap::new(offset_s, drift_ppm),
        gap_power_w,
        layers: n_layers,
        confidence,
        saturation_w,
    };
    let (s, e) = windows.bounds();
    let r = with_power!(power, |p| compute(py, || {
        energy::fold_layers(p, t0, sample_rate_hz, s, e, &ids, &options)
    }))?;
    let layers = &r.layers;
    Ok(py_dict!(py, {
        "power_w" => column(py, layers, |l| l.power.power_w),
        "power_se_w" => column(py, layers, |l| l.power.power_se_w),
        "power_ci_low_w" => column(py, layers, |l| l.power.ci_low_w),
        "power_ci_high_w" => column(py, layers, |l| l.power.ci_high_w),
        "energy_j" => column(py, layers, |l| l.energy_j),
        "energy_ci_low_j" => column(py, layers, |l| l.energy_ci_low_j),
        "energy_ci_high_j" => column(py, layers, |l| l.energy_ci_high_j),
        "mean_duration_s" => column(py, layers, |l| l.mean_duration_s),
        "calls" => column(py, layers, |l| l.calls as i64),
        "samples" => column(py, layers, |l| l.power.samples as i64),
        "flags" => column(py, layers, |l| l.power.flags),
        "gap_power_w" => r.gap.power_w,
        "gap_power_se_w" => r.gap.power_se_w,
        "gap_ci_low_w" => r.gap.ci_low_w,
        "gap_ci_high_w" => r.gap.ci_high_w,
        "gap_samples" => r.gap.samples,
        "gap_flags" => r.gap.flags,
        "equations" => r.equations,
        "excluded_samples" => r.excluded_samples,
        "saturated_samples" => r.saturated_samples,
        "unknowns" => r.unknowns,
        "rank" => r.rank,
        "rank_deficient" => r.rank_deficient(),
        "dof" => r.dof,
        "residual_std_w" => r.residual_std_w,
        "confidence" => r.confidence,
        "t_multiplier" => r.t_multiplier,
    }))
}

/// Window integration over a uniform trace fed in chunks; bounded memory.
#[pyclass(name = "StreamingIntegrator", module = "joulefarm._core")]
struct PyStreamingIntegrator {
    inner: energy::StreamingIntegrator,
}

#[pymethods]
impl PyStreamingIntegrator {
    #[new]
    #[pyo3(signature = (sample_rate_hz, starts, ends, t0=0.0, offset_s=0.0, drift_ppm=0.0, model="hold", saturation_w=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        sample_rate_hz: f64,
        starts: &Bound<'_, PyAny>,
        ends: &Bound<'_, PyAny>,
        t0: f64,
        offset_s: f64,
        drift_ppm: f64,
        model: &str,
        saturation_w: Option<f64>,
    ) -> PyResult<Self> {
        let r = Reading::parse(offset_s, drift_ppm, model, saturation_w)?;
        let windows = Windows::read(starts, ends)?;
        let (s, e) = windows.bounds();
        let fs = sample_rate_hz;
        let inner =
            energy::StreamingIntegrator::new(fs, t0, s, e, r.clock, r.model, r.saturation_w)
                .map_err(CoreError::from)?;
        Ok(PyStreamingIntegrator { inner })
    }

    /// Adds the next chunk of samples (float32 or float64).
    fn feed(&mut self, py: Python<'_>, chunk: &Bound<'_, PyAny>) -> PyResult<()> {
        let chunk = as_power(chunk)?;
        let inner = &mut self.inner;
        with_power!(chunk, |p| compute(py, || inner.feed(p)))
    }

    /// Samples received so far.
    #[getter]
    fn samples_seen(&self) -> u64 {
        self.inner.samples_seen()
    }

    /// Finishes the trace and returns the same columns as `integrate_windows`.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let inner = &mut self.inner;
        let stats = compute(py, || inner.finish())?;
        stats_to_dict(py, &stats)
    }
}

/// "release" or "debug": benchmarks must refuse figures from a debug build.
#[pyfunction]
fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TraceError", m.py().get_type::<TraceError>())?;
    m.add("FLAG_NO_SAMPLES", flags::NO_SAMPLES)?;
    m.add("FLAG_PARTIAL_COVERAGE", flags::PARTIAL_COVERAGE)?;
    m.add("FLAG_NAN_SAMPLES", flags::NAN_SAMPLES)?;
    m.add("FLAG_GAP", flags::GAP)?;
    m.add("FLAG_NON_MONOTONIC", flags::NON_MONOTONIC)?;
    m.add("FLAG_SATURATED", flags::SATURATED)?;
    m.add("FLAG_UNIDENTIFIABLE", flags::UNIDENTIFIABLE)?;
    m.add_function(wrap_pyfunction!(integrate, m)?)?;
    m.add_function(wrap_pyfunction!(integrate_windows, m)?)?;
    m.add_function(wrap_pyfunction!(integrate_windows_iv, m)?)?;
    m.add_function(wrap_pyfunction!(idle_power, m)?)?;
    m.add_function(wrap_pyfunction!(align_offset, m)?)?;
    m.add_function(wrap_pyfunction!(integrate_timestamped, m)?)?;
    m.add_function(wrap_pyfunction!(align_clock, m)?)?;
    m.add_function(wrap_pyfunction!(decimate_minmax, m)?)?;
    m.add_function(wrap_pyfunction!(fold_layers, m)?)?;
    m.add_class::<PyStreamingIntegrator>()?;
    m.add_function(wrap_pyfunction!(build_profile, m)?)?;
    Ok(())
}
