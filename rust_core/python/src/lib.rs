//! `joulefarm._core`: a thin PyO3 layer over the `joulefarm-energy` crate.
//!
//! Arrays are borrowed from numpy without copying when they are contiguous float64/float32;
//! anything else is converted once with `numpy.asarray`. Every computation runs with the GIL
//! released (`compute`), and every crate error becomes `TraceError` (`From<EnergyError>`).

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

type CoreResult<T> = Result<T, CoreError>;

/// Runs `f` with the GIL released. Every computation goes through here.
fn compute<T, F>(py: Python<'_>, f: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    py.detach(f)
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

fn parse_model(model: &str) -> CoreResult<SignalModel> {
    Ok(model.parse::<SignalModel>()?)
}

#[allow(clippy::too_many_arguments)]
fn run_integrate(
    py: Python<'_>,
    power: &Bound<'_, PyAny>,
    sample_rate_hz: f64,
    starts: &Bound<'_, PyAny>,
    ends: &Bound<'_, PyAny>,
    t0: f64,
    offset_s: f64,
    drift_ppm: f64,
    model: &str,
    saturation_w: Option<f64>,
) -> PyResult<Vec<WindowStats>> {
    let model = parse_model(model)?;
    let power = as_power(power)?;
    let starts = as_f64("starts", starts)?;
    let ends = as_f64("ends", ends)?;
    let clock = ClockMap::new(offset_s, drift_ppm);
    let (s, e) = (starts.slice(), ends.slice());
    let stats = with_power!(power, |p| compute(py, || {
        energy::integrate_uniform(p, t0, sample_rate_hz, s, e, clock, model, saturation_w)
    }));
    Ok(stats.map_err(CoreError::from)?)
}

/// Energy in joules of each window `[starts[k], ends[k]]` (agent clock, seconds).
#[pyfunction]
#[pyo3(signature = (power, sample_rate_hz, starts, ends, t0=0.0, offset_s=0.0, drift_ppm=0.0, model="hold", saturation_w=None))]
#[allow(clippy::too_many_arguments)]
fn integrate<'py>(
    py: Python<'py>,
    power: &Bound<'py, PyAny>,
    sample_rate_hz: f64,
    starts: &Bound<'py, PyAny>,
    ends: &Bound<'py, PyAny>,
    t0: f64,
    offset_s: f64,
    drift_ppm: f64,
    model: &str,
    saturation_w: Option<f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let stats = run_integrate(
        py,
        power,
        sample_rate_hz,
        starts,
        ends,
        t0,
        offset_s,
        drift_ppm,
        model,
        saturation_w,
    )?;
    let energy: Vec<f64> = stats.iter().map(|w| w.energy_j).collect();
    Ok(energy.into_pyarray(py))
}

fn stats_to_dict<'py>(py: Python<'py>, stats: &[WindowStats]) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let col = |f: fn(&WindowStats) -> f64| stats.iter().map(f).collect::<Vec<f64>>();
    out.set_item("energy_j", col(|w| w.energy_j).into_pyarray(py))?;
    out.set_item("mean_power_w", col(|w| w.mean_power_w).into_pyarray(py))?;
    let samples: Vec<i64> = stats.iter().map(|w| w.samples as i64).collect();
    out.set_item("samples", samples.into_pyarray(py))?;
    out.set_item("coverage", col(|w| w.coverage).into_pyarray(py))?;
    let flags: Vec<u32> = stats.iter().map(|w| w.flags).collect();
    out.set_item("flags", flags.into_pyarray(py))?;
    Ok(out)
}

/// Per-window energy, mean power, sample count, coverage and flags.
#[pyfunction]
#[pyo3(signature = (power, sample_rate_hz, starts, ends, t0=0.0, offset_s=0.0, drift_ppm=0.0, model="hold", saturation_w=None))]
#[allow(clippy::too_many_arguments)]
fn integrate_windows<'py>(
    py: Python<'py>,
    power: &Bound<'py, PyAny>,
    sample_rate_hz: f64,
    starts: &Bound<'py, PyAny>,
    ends: &Bound<'py, PyAny>,
    t0: f64,
    offset_s: f64,
    drift_ppm: f64,
    model: &str,
    saturation_w: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let stats = run_integrate(
        py,
        power,
        sample_rate_hz,
        starts,
        ends,
        t0,
        offset_s,
        drift_ppm,
        model,
        saturation_w,
    )?;
    stats_to_dict(py, &stats)
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
    let model = parse_model(model)?;
    let current = as_channel("current_a", current_a)?;
    let voltage = as_channel("voltage_v", voltage_v)?;
    let starts = as_f64("starts", starts)?;
    let ends = as_f64("ends", ends)?;
    let clock = ClockMap::new(offset_s, drift_ppm);
    let (s, e) = (starts.slice(), ends.slice());
    let stats = with_power!(current, |i| with_power!(voltage, |v| compute(py, || {
        energy::CurrentVoltage::new(i, v).and_then(|iv| {
            energy::integrate_series(iv, t0, sample_rate_hz, s, e, clock, model, saturation_w)
        })
    })));
    let stats = stats.map_err(CoreError::from)?;
    stats_to_dict(py, &stats)
}

/// Mean power in watts over the idle windows (total energy / total covered duration).
#[pyfunction]
#[pyo3(signature = (power, sample_rate_hz, starts, ends, t0=0.0, offset_s=0.0, drift_ppm=0.0, model="hold", saturation_w=None))]
#[allow(clippy::too_many_arguments)]
fn idle_power(
    py: Python<'_>,
    power: &Bound<'_, PyAny>,
    sample_rate_hz: f64,
    starts: &Bound<'_, PyAny>,
    ends: &Bound<'_, PyAny>,
    t0: f64,
    offset_s: f64,
    drift_ppm: f64,
    model: &str,
    saturation_w: Option<f64>,
) -> PyResult<f64> {
    let model = parse_model(model)?;
    let power = as_power(power)?;
    let starts = as_f64("starts", starts)?;
    let ends = as_f64("ends", ends)?;
    let clock = ClockMap::new(offset_s, drift_ppm);
    let (s, e) = (starts.slice(), ends.slice());
    let watts = with_power!(power, |p| compute(py, || {
        energy::idle_power(p, t0, sample_rate_hz, s, e, clock, model, saturation_w)
    }));
    Ok(watts.map_err(CoreError::from)?)
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
    let starts = as_f64("busy_starts", busy_starts)?;
    let ends = as_f64("busy_ends", busy_ends)?;
    let (s, e) = (starts.slice(), ends.slice());
    let found = with_power!(power, |p| compute(py, || {
        energy::align_offset(p, t0, sample_rate_hz, s, e, max_offset_s)
    }));
    let found = found.map_err(CoreError::from)?;
    let out = PyDict::new(py);
    out.set_item("offset_s", found.offset_s)?;
    out.set_item("correlation", found.correlation)?;
    out.set_item("residual_w", found.residual_w)?;
    Ok(out)
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
    let model = parse_model(model)?;
    let t = as_f64("t", t)?;
    let power = as_power(power)?;
    let starts = as_f64("starts", starts)?;
    let ends = as_f64("ends", ends)?;
    let clock = ClockMap::new(offset_s, drift_ppm);
    let (ts, s, e) = (t.slice(), starts.slice(), ends.slice());
    let result = with_power!(power, |p| compute(py, || {
        energy::integrate_timestamped(ts, p, s, e, clock, model, max_gap_s, saturation_w)
    }));
    let (stats, q) = result.map_err(CoreError::from)?;
    let quality = PyDict::new(py);
    quality.set_item("samples", q.samples)?;
    quality.set_item("nan_samples", q.nan_samples)?;
    quality.set_item("saturated_samples", q.saturated_samples)?;
    quality.set_item("non_monotonic", q.non_monotonic)?;
    quality.set_item("gaps", q.gaps)?;
    quality.set_item("gap_s", q.gap_s)?;
    quality.set_item("max_interval_s", q.max_interval_s)?;
    quality.set_item("mean_interval_s", q.mean_interval_s)?;
    quality.set_item("start_s", q.start_s)?;
    quality.set_item("end_s", q.end_s)?;
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
    let starts = as_f64("busy_starts", busy_starts)?;
    let ends = as_f64("busy_ends", busy_ends)?;
    let (s, e) = (starts.slice(), ends.slice());
    // Default split: halfway between the first start and the last end.
    let split = split_at.unwrap_or_else(|| {
        let lo = s.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = e.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (lo + hi)
    });
    let fit = with_power!(power, |p| compute(py, || {
        energy::align_clock(p, t0, sample_rate_hz, s, e, split, max_offset_s)
    }));
    let fit = fit.map_err(CoreError::from)?;
    let out = PyDict::new(py);
    out.set_item("offset_s", fit.offset_s)?;
    out.set_item("drift_ppm", fit.drift_ppm)?;
    out.set_item("anchor_times_s", fit.anchors.map(|(c, _)| c).to_vec())?;
    out.set_item(
        "anchor_offsets_s",
        fit.anchors.map(|(_, a)| a.offset_s).to_vec(),
    )?;
    out.set_item(
        "correlation",
        fit.anchors.map(|(_, a)| a.correlation).to_vec(),
    )?;
    out.set_item(
        "residual_w",
        fit.anchors.map(|(_, a)| a.residual_w).to_vec(),
    )?;
    Ok(out)
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
    )));
    let d = d.map_err(CoreError::from)?;
    let out = PyDict::new(py);
    out.set_item("min", d.min.into_pyarray(py))?;
    out.set_item("max", d.max.into_pyarray(py))?;
    out.set_item("mean", d.mean.into_pyarray(py))?;
    Ok(out)
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
    let starts = as_f64("starts", starts)?;
    let ends = as_f64("ends", ends)?;
    let ids = as_layer_ids(layer_ids)?;
    let options = energy::FoldOptions {
        clock: ClockMap::new(offset_s, drift_ppm),
        gap_power_w,
        layers: n_layers,
        confidence,
        saturation_w,
    };
    let (s, e) = (starts.slice(), ends.slice());
    let result = with_power!(power, |p| compute(py, || {
        energy::fold_layers(p, t0, sample_rate_hz, s, e, &ids, &options)
    }));
    let r = result.map_err(CoreError::from)?;
    let out = PyDict::new(py);
    let col = |f: fn(&energy::LayerFold) -> f64| r.layers.iter().map(f).collect::<Vec<f64>>();
    out.set_item("power_w", col(|l| l.power.power_w).into_pyarray(py))?;
    out.set_item("power_se_w", col(|l| l.power.power_se_w).into_pyarray(py))?;
    out.set_item("power_ci_low_w", col(|l| l.power.ci_low_w).into_pyarray(py))?;
    out.set_item(
        "power_ci_high_w",
        col(|l| l.power.ci_high_w).into_pyarray(py),
    )?;
    out.set_item("energy_j", col(|l| l.energy_j).into_pyarray(py))?;
    out.set_item(
        "energy_ci_low_j",
        col(|l| l.energy_ci_low_j).into_pyarray(py),
    )?;
    out.set_item(
        "energy_ci_high_j",
        col(|l| l.energy_ci_high_j).into_pyarray(py),
    )?;
    out.set_item(
        "mean_duration_s",
        col(|l| l.mean_duration_s).into_pyarray(py),
    )?;
    let calls: Vec<i64> = r.layers.iter().map(|l| l.calls as i64).collect();
    out.set_item("calls", calls.into_pyarray(py))?;
    let samples: Vec<i64> = r.layers.iter().map(|l| l.power.samples as i64).collect();
    out.set_item("samples", samples.into_pyarray(py))?;
    let flags: Vec<u32> = r.layers.iter().map(|l| l.power.flags).collect();
    out.set_item("flags", flags.into_pyarray(py))?;
    out.set_item("gap_power_w", r.gap.power_w)?;
    out.set_item("gap_power_se_w", r.gap.power_se_w)?;
    out.set_item("gap_ci_low_w", r.gap.ci_low_w)?;
    out.set_item("gap_ci_high_w", r.gap.ci_high_w)?;
    out.set_item("gap_samples", r.gap.samples)?;
    out.set_item("gap_flags", r.gap.flags)?;
    out.set_item("equations", r.equations)?;
    out.set_item("excluded_samples", r.excluded_samples)?;
    out.set_item("saturated_samples", r.saturated_samples)?;
    out.set_item("unknowns", r.unknowns)?;
    out.set_item("rank", r.rank)?;
    out.set_item("rank_deficient", r.rank_deficient())?;
    out.set_item("dof", r.dof)?;
    out.set_item("residual_std_w", r.residual_std_w)?;
    out.set_item("confidence", r.confidence)?;
    out.set_item("t_multiplier", r.t_multiplier)?;
    Ok(out)
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
        let model = parse_model(model)?;
        let starts = as_f64("starts", starts)?;
        let ends = as_f64("ends", ends)?;
        let clock = ClockMap::new(offset_s, drift_ppm);
        let inner = energy::StreamingIntegrator::new(
            sample_rate_hz,
            t0,
            starts.slice(),
            ends.slice(),
            clock,
            model,
            saturation_w,
        )
        .map_err(CoreError::from)?;
        Ok(PyStreamingIntegrator { inner })
    }

    /// Adds the next chunk of samples (float32 or float64).
    fn feed(&mut self, py: Python<'_>, chunk: &Bound<'_, PyAny>) -> PyResult<()> {
        let chunk = as_power(chunk)?;
        let inner = &mut self.inner;
        let done = with_power!(chunk, |p| compute(py, || inner.feed(p)));
        Ok(done.map_err(CoreError::from)?)
    }

    /// Samples received so far.
    #[getter]
    fn samples_seen(&self) -> u64 {
        self.inner.samples_seen()
    }

    /// Finishes the trace and returns the same columns as `integrate_windows`.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let inner = &mut self.inner;
        let stats = compute(py, || inner.finish()).map_err(CoreError::from)?;
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
