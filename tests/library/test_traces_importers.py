"""Importers for meter logs: generic CSV, Monsoon CSV, PTDaemon spl.txt, tegrastats."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import joulefarm
from joulefarm.errors import TraceFormatError, TraceInputError
from joulefarm.traces import ReadOptions, detect_format, import_trace, summarize, window_energy
from joulefarm.traces.monsoon import read_monsoon_csv
from tests.helpers import FIXTURES as HELPERS_FIXTURES

FIXTURES = HELPERS_FIXTURES / "traces"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- generic CSV -----------------------------------------------------------------------------

def test_csv_seconds_and_watts_is_uniform() -> None:
    trace = import_trace(FIXTURES / "piecewise_10hz.csv")
    assert trace.meta["source_format"] == "csv"
    assert trace.meta["simulated"] is False
    assert trace.uniform and trace.sample_rate_hz == 10.0 and trace.t0_s == 0.0
    assert trace.samples == 20
    np.testing.assert_array_equal(trace.power_w[:10], 1.0)
    np.testing.assert_array_equal(trace.power_w[10:], 3.0)


def test_csv_current_and_voltage_in_milli_units() -> None:
    trace = import_trace(FIXTURES / "current_voltage_ms.csv")
    np.testing.assert_allclose(trace.t_s, np.arange(8) * 0.1)
    np.testing.assert_allclose(trace.channels["current_a"], 0.5)
    np.testing.assert_allclose(trace.channels["voltage_v"], 5.0)
    np.testing.assert_allclose(trace.power_w, 2.5)
    assert trace.sample_rate_hz == pytest.approx(10.0)


@pytest.mark.parametrize(("header", "row", "t1", "p"), [
    ("t,power_mw", "0.5,1500", 0.5, 1.5),
    ("Time (ms),Power [mW]", "500,1500", 0.5, 1.5),
    ("time_us,watts", "500000,1.5", 0.5, 1.5),
    ("timestamp;P (uW)", "0.5;1500000", 0.5, 1.5),
    ("TIME\tmW", "0.5\t1500", 0.5, 1.5),
    ("elapsed,I (mA),U (V)", "0.5,300,5", 0.5, 1.5),
])
def test_csv_column_names_and_units(tmp_path: Path, header: str, row: str, t1: float,
                                    p: float) -> None:
    delimiter = ";" if ";" in header else "\t" if "\t" in header else ","
    first = delimiter.join("0" if k == 0 else cell for k, cell in enumerate(row.split(delimiter)))
    path = _write(tmp_path, "x.csv", f"{header}\n{first}\n{row}\n")
    trace = import_trace(path)
    assert trace.t_s[1] == pytest.approx(t1)
    assert trace.power_w[1] == pytest.approx(p)


def test_csv_unit_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "time,power\n0,1000\n10,2000\n20,3000\n")
    trace = import_trace(path, options=ReadOptions(time_unit="ms", power_unit="mW"))
    np.testing.assert_allclose(trace.t_s, [0.0, 0.01, 0.02])
    np.testing.assert_allclose(trace.power_w, [1.0, 2.0, 3.0])
    assert trace.sample_rate_hz == pytest.approx(100.0)
    with pytest.raises(TraceInputError, match="unknown power unit 'kj'"):
        import_trace(path, options=ReadOptions(power_unit="kJ"))


def test_csv_iso_datetimes_are_unix_utc(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "timestamp,power_w\n2024-05-01T12:00:00Z,2\n"
                                     "2024-05-01T12:00:01.5+00:00,4\n2024-05-01 12:00:02,6\n")
    trace = import_trace(path)
    t0 = datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()
    # Readings held until the next; the last one for the median interval (1 s): a closing point.
    np.testing.assert_allclose(trace.t_s - t0, [0.0, 1.5, 2.0, 3.0])
    np.testing.assert_allclose(trace.power_w, [2, 4, 6, 6])
    assert trace.meta["last_reading_held_s"] == 1.0 and trace.meta["samples"] == 3
    assert not trace.uniform
    assert "unix UTC" in trace.meta["time_base"]


def test_csv_comments_and_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "# logger v2\n\ntime_s,power_w\n0,1\n# pause\n\n0.5,2\n1,3\n")
    trace = import_trace(path)
    np.testing.assert_allclose(trace.power_w, [1, 2, 3])
    assert trace.uniform and trace.sample_rate_hz == 2.0


def test_csv_non_uniform_timestamps(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "time_s,power_w\n0,1\n0.1,1\n0.35,2\n0.4,2\n")
    trace = import_trace(path)
    assert not trace.uniform and "sample_rate_hz" not in trace.meta


def test_csv_bad_number_names_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.csv", "time_s,power_w\n0,1\n0.1,1.5\n0.2,oops\n0.3,1\n")
    with pytest.raises(TraceFormatError) as e:
        import_trace(path)
    assert str(e.value) == f"{path}:4: column 'power_w': cannot read 'oops' as a number"


def test_csv_short_row_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.csv", "time_s,power_w\n0,1\n0.1\n")
    with pytest.raises(TraceFormatError, match=r"bad\.csv:3: 1 fields"):
        import_trace(path)


def test_csv_bad_date_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.csv", "timestamp,power_w\n2024-05-01T12:00:00,1\nlater,2\n")
    with pytest.raises(TraceFormatError, match=r"bad\.csv:3: column 'timestamp': cannot read "
                                               r"'later' as an ISO 8601 date-time"):
        import_trace(path)


def test_csv_without_power_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "time_s,temperature_c\n0,40\n")
    with pytest.raises(TraceFormatError, match=r"x\.csv:1: header .* neither a power column"):
        import_trace(path, "csv")


# --- Monsoon ----------------------------------------------------------------------------------

def test_monsoon_time_is_rebuilt_at_5khz() -> None:
    path = FIXTURES / "monsoon_hvpm.csv"
    trace = import_trace(path)
    assert trace.meta["source_format"] == "monsoon"
    assert trace.uniform and trace.sample_rate_hz == 5000.0
    first_stamp = float(path.read_text().splitlines()[1].split(",")[0])
    # A sample is stamped with its packet, after it ended: t0 is the tightest stamp - (i+1)/fs.
    assert trace.t0_s == read_monsoon_csv(path).t0_by_arrival() <= first_stamp - 1 / 5000
    np.testing.assert_allclose(np.diff(trace.t_s), 1 / 5000)
    assert "t0 + i/5000" in trace.meta["time_rebuilt"]
    np.testing.assert_allclose(trace.power_w[:30], 0.1 * 4.2)
    np.testing.assert_allclose(trace.power_w[30:], 0.2 * 4.2)
    np.testing.assert_allclose(trace.channels["current_a"][:30], 0.1)
    assert trace.meta["notes"] == []


def test_monsoon_stamps_disagreeing_with_rate_leave_a_note(tmp_path: Path) -> None:
    # 10 samples whose packet stamps span 2 s: far more than 10 samples at 5 kHz.
    rows = "".join(f"{0.2 * i!r},100.0,4.0,\n" for i in range(11))
    path = _write(tmp_path, "m.csv", "Time(ms),Main(mA),Main Voltage(V),\n" + rows)
    trace = import_trace(path)
    assert any("dropped or the capture was decimated" in n for n in trace.meta["notes"])
    slow = import_trace(path, options=ReadOptions(sample_rate_hz=5.0))
    assert slow.sample_rate_hz == 5.0 and slow.meta["notes"] == []


def test_monsoon_usb_channel_when_main_disabled(tmp_path: Path) -> None:
    path = _write(tmp_path, "m.csv", "Time(ms),USB(mA),USB Voltage(V),\n0.1,500.0,5.0,\n"
                                     "0.1,500.0,5.0,\n")
    trace = import_trace(path)
    assert trace.meta["channel"] == "USB"
    np.testing.assert_allclose(trace.power_w, 2.5)


def test_monsoon_malformed_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "m.csv", "Time(ms),Main(mA),Main Voltage(V),\n0.1,100.0,4.2,\n"
                                     "0.1,1O0.0,4.2,\n")
    with pytest.raises(TraceFormatError, match=r"m\.csv:3: column 'Main\(mA\)': cannot read "
                                               "'1O0.0' as a number"):
        import_trace(path)


# --- PTDaemon spl.txt -------------------------------------------------------------------------

def test_spl_fields_and_unix_utc_time() -> None:
    trace = import_trace(FIXTURES / "spl.txt")
    assert trace.meta["source_format"] == "spl"
    first = datetime(2020, 12, 28, 15, 21, 14, 682000, tzinfo=UTC).timestamp()
    assert trace.t_s[0] == pytest.approx(first, abs=1e-6)
    assert trace.t_s[2] - trace.t_s[0] == pytest.approx(1.999, abs=1e-6)
    assert trace.meta["date_order"] == "dmy"
    assert trace.meta["time_base"] == "unix UTC seconds"
    assert trace.power_w[2] == pytest.approx(131.87)
    assert trace.channels["voltage_v"][0] == pytest.approx(229.48)
    assert trace.channels["current_a"][0] == pytest.approx(0.6153)
    assert trace.channels["power_factor"][0] == pytest.approx(0.6754)
    assert trace.channels["mark"][0] == "2020-12-28_15-20-50_ranging"
    # 1 Hz with a few ms of jitter counts as uniform.
    assert trace.uniform and trace.sample_rate_hz == pytest.approx(1.0, rel=1e-3)


def test_spl_month_first_and_timezone_offset(tmp_path: Path) -> None:
    path = _write(tmp_path, "spl.txt",
                  "Time,07-24-2021 23:45:43.484,Watts,26.87,Volts,120.33,Amps,0.3553,PF,0.6285,"
                  "Mark,x\nTime,07-24-2021 23:45:44.485,Watts,26.9,Volts,120.3,Amps,0.355,PF,0.63,"
                  "Mark,x\n")
    trace = import_trace(path, options=ReadOptions(tz_offset_s=-7200))
    expected = datetime(2021, 7, 24, 23, 45, 43, 484000, tzinfo=UTC).timestamp() - 7200
    assert trace.t_s[0] == pytest.approx(expected, abs=1e-6)
    assert trace.meta["date_order"] == "mdy"


def test_spl_ambiguous_dates_default_to_month_first(tmp_path: Path) -> None:
    path = _write(tmp_path, "spl.txt", "Time,03-04-2021 10:00:00.000,Watts,10,Mark,a\n")
    trace = import_trace(path)
    assert trace.t_s[0] == datetime(2021, 3, 4, 10, tzinfo=UTC).timestamp()
    assert trace.meta["date_order"].startswith("mdy (assumed")
    forced = import_trace(path, options=ReadOptions(date_order="dmy"))
    assert forced.t_s[0] == datetime(2021, 4, 3, 10, tzinfo=UTC).timestamp()


def test_spl_malformed_lines(tmp_path: Path) -> None:
    good = "Time,28-12-2020 15:21:14.682,Watts,95.3,Volts,229.4,Amps,0.6,PF,0.67,Mark,m\n"
    path = _write(tmp_path, "spl.txt", good + "Time,28-12-2020 15:21:15.682,Watts,n/a,Mark,m\n")
    with pytest.raises(TraceFormatError, match=r"spl\.txt:2: Watts value 'n/a' is not a number"):
        import_trace(path)
    path = _write(tmp_path, "spl.txt", good + "Time,2020/12/28 15:21:15,Watts,95,Mark,m\n")
    with pytest.raises(TraceFormatError, match=r"spl\.txt:2: cannot read time"):
        import_trace(path)
    path = _write(tmp_path, "spl.txt", "garbage line\n")
    with pytest.raises(TraceFormatError, match=r"spl\.txt: no PTDaemon sample lines"):
        import_trace(path, "spl")


# --- tegrastats -------------------------------------------------------------------------------

def test_tegrastats_jp5_reads_first_number_of_vdd_in() -> None:
    trace = import_trace(FIXTURES / "tegrastats_orin_jp5.log")
    assert trace.meta["source_format"] == "tegrastats"
    assert trace.meta["rail"] == "VDD_IN"
    # Instantaneous values, not the running averages after the slash (4782, 6371, 6954, 6421).
    np.testing.assert_allclose(trace.power_w, [4.782, 7.960, 8.120, 4.821])
    # Whole-second dates, 1 s apart: uniform at 1 Hz, centred in the logged second.
    first = datetime(2023, 8, 10, 14, 30, 1, tzinfo=UTC).timestamp()
    assert trace.uniform and trace.sample_rate_hz == 1.0
    assert trace.t0_s == pytest.approx(first + 0.5)


def test_tegrastats_jp4_unitless_without_dates() -> None:
    trace = import_trace(FIXTURES / "tegrastats_nano_jp4.log")
    assert trace.meta["rail"] == "POM_5V_IN"
    assert "without unit" in trace.meta["rail_units"]
    np.testing.assert_allclose(trace.power_w, [1.289, 4.520, 4.480])
    np.testing.assert_allclose(trace.t_s, [0.0, 1.0, 2.0])
    assert trace.sample_rate_hz == 1.0
    fast = import_trace(FIXTURES / "tegrastats_nano_jp4.log",
                        options=ReadOptions(interval_ms=250))
    np.testing.assert_allclose(fast.t_s, [0.0, 0.25, 0.5])


def test_tegrastats_agx_without_input_rail_sums_rails(tmp_path: Path) -> None:
    line = ("RAM 2345/31927MB (lfb 6929x4MB) SWAP 0/15963MB (cached 0MB) CPU [1%@1190,2%@1190] "
            "EMC_FREQ 0%@2133 GR3D_FREQ 0%@1377 APE 150 MTS fg 0% bg 0% AO@33C GPU@33.5C "
            "Tboard@33C GPU 0/0 CPU 311/311 SOC 1554/1554 CV 0/0 VDDRQ 310/310 SYS5V 1816/1816\n")
    path = _write(tmp_path, "agx.log", line * 2)
    trace = import_trace(path)
    assert trace.meta["rail"] == "sum of GPU+CPU+SOC+CV+VDDRQ+SYS5V"
    np.testing.assert_allclose(trace.power_w, 3.991)
    soc = import_trace(path, options=ReadOptions(rail="SOC"))
    np.testing.assert_allclose(soc.power_w, 1.554)
    with pytest.raises(TraceInputError, match=r"agx\.log:1: no rail 'VDD_IN'"):
        import_trace(path, options=ReadOptions(rail="VDD_IN"))


def test_tegrastats_subsecond_interval_with_whole_second_dates(tmp_path: Path) -> None:
    # 500 ms interval: each whole-second date appears twice; the fitted line recovers 2 Hz.
    rail = "VDD_IN {p}mW/{p}mW"
    lines = [f"01-02-2024 10:00:{i // 2:02d} RAM 1/2MB {rail.format(p=1000 + i)}\n"
             for i in range(10)]
    path = _write(tmp_path, "t.log", "".join(lines))
    trace = import_trace(path, options=ReadOptions(interval_ms=500))
    assert trace.uniform and trace.sample_rate_hz == pytest.approx(2.0)
    assert trace.meta["notes"] == []


def test_tegrastats_iso_dates_with_fraction(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.log",
                  "[2024-01-02 10:00:00.250] RAM 1/2MB VDD_IN 5000mW/5000mW\n"
                  "[2024-01-02 10:00:00.750] RAM 1/2MB VDD_IN 6000mW/5500mW\n"
                  "[2024-01-02 10:00:01.250] RAM 1/2MB VDD_IN 7000mW/6000mW\n")
    trace = import_trace(path)
    base = datetime(2024, 1, 2, 10, tzinfo=UTC).timestamp()
    assert trace.t0_s == pytest.approx(base + 0.25)
    assert trace.sample_rate_hz == pytest.approx(2.0)


def test_tegrastats_malformed_lines(tmp_path: Path) -> None:
    good = "RAM 1/2MB POM_5V_IN 4520/4680\n"
    path = _write(tmp_path, "t.log", good + "tegrastats: interrupted\n")
    with pytest.raises(TraceFormatError, match=r"t\.log:2: no power rail"):
        import_trace(path, "tegrastats")
    path = _write(tmp_path, "t.log", good + "RAM 1/2MB POM_5V_GPU 0/0\n")
    with pytest.raises(TraceFormatError, match=r"t\.log:2: rail POM_5V_IN missing"):
        import_trace(path)
    path = _write(tmp_path, "t.log", "08-10-2023 14:30:01 " + good + good)
    with pytest.raises(TraceFormatError, match=r"t\.log:2: no date, unlike the first line"):
        import_trace(path)


# --- detection --------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "fmt"), [
    ("piecewise_10hz.csv", "csv"),
    ("current_voltage_ms.csv", "csv"),
    ("monsoon_hvpm.csv", "monsoon"),
    ("spl.txt", "spl"),
    ("tegrastats_orin_jp5.log", "tegrastats"),
    ("tegrastats_nano_jp4.log", "tegrastats"),
])
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(FIXTURES / name) == fmt


def test_detect_format_ignores_misleading_extension(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    path.write_text((FIXTURES / "spl.txt").read_text())
    assert detect_format(path) == "spl"


def test_undetectable_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "notes.txt", "hello world\n")
    with pytest.raises(TraceFormatError, match=r"notes\.txt: cannot tell the trace format"):
        import_trace(path)


def test_options_for_another_format_are_refused() -> None:
    with pytest.raises(TraceInputError, match="--time-unit does not apply to spl"):
        import_trace(FIXTURES / "spl.txt", options=ReadOptions(time_unit="ms"))


def test_forced_format_mismatch_names_line() -> None:
    with pytest.raises(TraceFormatError, match=r"piecewise_10hz\.csv: no PTDaemon sample lines"):
        import_trace(FIXTURES / "piecewise_10hz.csv", "spl")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceInputError, match="no such file"):
        import_trace(tmp_path / "nope.csv")


def test_monsoon_csv_written_under_numpy2_imports(tmp_path) -> None:
    # The monsoon package writes cells as numpy reprs when numpy >= 2 is installed.
    from joulefarm.traces import import_trace

    path = tmp_path / "hvpm.csv"
    rows = ["Time(ms),Main(mA),Main Voltage(V)"]
    rows += [f"np.float64({i / 5000:.4f}),np.float64(100.0),np.float64(4.2)" for i in range(50)]
    path.write_text("\n".join(rows) + "\n")
    trace = import_trace(path)
    assert len(trace.power_w) == 50
    assert float(trace.power_w[0]) == pytest.approx(0.42)


# --- real formats the readers once refused, and one definition of energy -------------------

def test_ptdaemon_l_log_skips_messages_and_notes_them() -> None:
    trace = import_trace(FIXTURES / "ptdaemon_l.log")  # detected from its NOTICE first line
    assert trace.meta["source_format"] == "spl"
    assert trace.meta["samples"] == 6
    np.testing.assert_allclose(trace.power_w[:6], [612.5, 618.25, 625.0, np.nan, 630.75, 628.0])
    notes = " ".join(trace.meta["notes"])
    assert "skipped 1 NOTICE line(s), the first on line 1" in notes
    assert "skipped 1 ERROR line(s), the first on line 5" in notes
    assert "skipped 1 WARNING line(s), the first on line 9" in notes
    assert "skipped 1 other text line(s), the first on line 6: 'Buffer was" in notes
    assert "1 reading(s) of -1 W" in notes
    # The invalid reading is missing power, never -1 W.
    result = window_energy(trace, [trace.t_s[0]], [trace.t_s[0] + 6.0])
    assert "nan_samples" in joulefarm.flag_names(int(result["flags"][0]))


def _spl_log(tmp_path: Path, name: str, jitter_s: float, watts: list[float]) -> Path:
    start = datetime(2021, 3, 19, 11, 0, 0, tzinfo=UTC)
    lines = []
    for i, w in enumerate(watts):
        inner = 0 < i < len(watts) - 1  # the end points fix the fitted line
        t = start.timestamp() + i + (jitter_s if i % 2 else -jitter_s) * inner
        stamp = datetime.fromtimestamp(t, UTC).strftime("%m-%d-%Y %H:%M:%S.%f")[:-3]
        lines.append(f"Time,{stamp},Watts,{w:.6f},Volts,230.0,Amps,0.5,PF,0.9,Mark,m\n")
    return _write(tmp_path, name, "".join(lines))


def test_ptdaemon_jitter_either_side_of_the_uniform_tolerance_gives_one_energy(
        tmp_path: Path) -> None:
    watts = [100.0 + 10 * (i % 4) for i in range(30)]
    a = import_trace(_spl_log(tmp_path, "a.txt", 0.009, watts))
    b = import_trace(_spl_log(tmp_path, "b.txt", 0.011, watts))
    assert a.uniform and not b.uniform  # the 1 % tolerance falls between them
    sa, sb = summarize(a), summarize(b)
    # Every reading covers one second in both: the last sample counts in both.
    assert sa.energy_j == pytest.approx(sum(watts), rel=1e-3)
    assert sb.energy_j == pytest.approx(sa.energy_j, rel=1e-3)
    assert sb.mean_power_w == pytest.approx(sa.mean_power_w, rel=1e-3)
    assert sa.samples == sb.samples == 30


def test_tegrastats_jetpack7_three_numbers_per_rail() -> None:
    trace = import_trace(FIXTURES / "tegrastats_agx_orin_jp72.log")
    assert trace.meta["rail"] == "sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"
    assert "VDDQ_VDD2_1V8AO left out" in trace.meta["total"]
    # The first (instantaneous) number, not the average or the maximum.
    np.testing.assert_allclose(trace.power_w, [4.385 + 1.196 + 5.552, 9.921 + 3.268 + 5.731,
                                               4.410 + 1.204 + 5.560])
    assert trace.uniform and trace.sample_rate_hz == 1.0


def test_thor_negative_reading_and_vin_total(tmp_path: Path) -> None:
    path = _write(tmp_path, "thor.log",
                  "RAM 1/2MB VDD_GPU -392mW/-392mW VDD_CPU_SOC_MSS 5887mW/5887mW "
                  "VIN_SYS_5V0 5635mW/5635mW VIN 19780mW/9890mW\n" * 2)
    trace = import_trace(path)
    assert trace.meta["rail"] == "VIN"
    np.testing.assert_allclose(trace.power_w, 19.78)
    gpu = import_trace(path, options=ReadOptions(rail="VDD_GPU"))
    np.testing.assert_allclose(gpu.power_w, -0.392)


def test_a_log_and_the_live_meter_report_the_same_total(tmp_path: Path) -> None:
    # AGX Orin (no input rail): the importer once took VIN_SYS_5V0 alone while the live meter
    # summed every rail. One parser and one rule now.
    import time

    from agent.meters.tegrastats import TegrastatsMeter

    lines = (FIXTURES / "tegrastats_agx_orin_jp72.log").read_text().splitlines()
    meter = TegrastatsMeter(iter([*lines, lines[-1]]), interval_ms=10)
    meter.start()
    time.sleep(0.05)
    live = meter.stop()
    logged = import_trace(FIXTURES / "tegrastats_agx_orin_jp72.log")
    np.testing.assert_allclose(live.power_w[:3], logged.power_w)
