"""Importers for meter logs: generic CSV, Monsoon CSV, PTDaemon spl.txt, tegrastats."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from joulefarm.errors import TraceFormatError, TraceInputError
from joulefarm.traces import ImportOptions, detect_format, import_trace

FIXTURES = Path(__file__).parent / "fixtures" / "traces"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- generic CSV -----------------------------------------------------------------------------

def test_csv_seconds_and_watts_is_uniform() -> None:
    trace = import_trace(FIXTURES / "piecewise_10hz.csv")
    assert trace.meta["source_format"] == "csv"
    assert trace.meta["simulated"] is False
    assert trace.uniform and trace.sample_rate_hz == 10.0 and trace.t0 == 0.0
    assert trace.samples == 20
    np.testing.assert_array_equal(trace.power_w[:10], 1.0)
    np.testing.assert_array_equal(trace.power_w[10:], 3.0)


def test_csv_current_and_voltage_in_milli_units() -> None:
    trace = import_trace(FIXTURES / "current_voltage_ms.csv")
    np.testing.assert_allclose(trace.t_s, np.arange(8) * 0.1)
    np.testing.assert_allclose(trace.extra["current_a"], 0.5)
    np.testing.assert_allclose(trace.extra["voltage_v"], 5.0)
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
    trace = import_trace(path, options=ImportOptions(time_unit="ms", power_unit="mW"))
    np.testing.assert_allclose(trace.t_s, [0.0, 0.01, 0.02])
    np.testing.assert_allclose(trace.power_w, [1.0, 2.0, 3.0])
    assert trace.sample_rate_hz == pytest.approx(100.0)
    with pytest.raises(TraceInputError, match="unknown power unit 'kj'"):
        import_trace(path, options=ImportOptions(power_unit="kJ"))


def test_csv_iso_datetimes_are_unix_utc(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "timestamp,power_w\n2024-05-01T12:00:00Z,2\n"
                                     "2024-05-01T12:00:01.5+00:00,4\n2024-05-01 12:00:02,6\n")
    trace = import_trace(path)
    t0 = datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()
    np.testing.assert_allclose(trace.t_s - t0, [0.0, 1.5, 2.0])
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
    assert trace.t0 == first_stamp
    np.testing.assert_allclose(np.diff(trace.t_s), 1 / 5000)
    assert "t0 + i/5000" in trace.meta["time_rebuilt"]
    np.testing.assert_allclose(trace.power_w[:30], 0.1 * 4.2)
    np.testing.assert_allclose(trace.power_w[30:], 0.2 * 4.2)
    np.testing.assert_allclose(trace.extra["current_a"][:30], 0.1)
    assert trace.meta["notes"] == []


def test_monsoon_stamps_disagreeing_with_rate_leave_a_note(tmp_path: Path) -> None:
    # 10 samples whose packet stamps span 2 s: far more than 10 samples at 5 kHz.
    rows = "".join(f"{0.2 * i!r},100.0,4.0,\n" for i in range(11))
    path = _write(tmp_path, "m.csv", "Time(ms),Main(mA),Main Voltage(V),\n" + rows)
    trace = import_trace(path)
    assert any("dropped or the capture was decimated" in n for n in trace.meta["notes"])
    slow = import_trace(path, options=ImportOptions(sample_rate_hz=5.0))
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
                                               "'1O0.0'"):
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
    assert trace.extra["voltage_v"][0] == pytest.approx(229.48)
    assert trace.extra["current_a"][0] == pytest.approx(0.6153)
    assert trace.extra["power_factor"][0] == pytest.approx(0.6754)
    assert trace.extra["mark"][0] == "2020-12-28_15-20-50_ranging"
    # 1 Hz with a few ms of jitter counts as uniform.
    assert trace.uniform and trace.sample_rate_hz == pytest.approx(1.0, rel=1e-3)


def test_spl_month_first_and_timezone_offset(tmp_path: Path) -> None:
    path = _write(tmp_path, "spl.txt",
                  "Time,07-24-2021 23:45:43.484,Watts,26.87,Volts,120.33,Amps,0.3553,PF,0.6285,"
                  "Mark,x\nTime,07-24-2021 23:45:44.485,Watts,26.9,Volts,120.3,Amps,0.355,PF,0.63,"
                  "Mark,x\n")
    trace = import_trace(path, options=ImportOptions(tz_offset_s=-7200))
    expected = datetime(2021, 7, 24, 23, 45, 43, 484000, tzinfo=UTC).timestamp() - 7200
    assert trace.t_s[0] == pytest.approx(expected, abs=1e-6)
    assert trace.meta["date_order"] == "mdy"


def test_spl_ambiguous_dates_default_to_month_first(tmp_path: Path) -> None:
    path = _write(tmp_path, "spl.txt", "Time,03-04-2021 10:00:00.000,Watts,10,Mark,a\n")
    trace = import_trace(path)
    assert trace.t_s[0] == datetime(2021, 3, 4, 10, tzinfo=UTC).timestamp()
    assert trace.meta["date_order"].startswith("mdy (assumed")
    forced = import_trace(path, options=ImportOptions(date_order="dmy"))
    assert forced.t_s[0] == datetime(2021, 4, 3, 10, tzinfo=UTC).timestamp()


def test_spl_malformed_lines(tmp_path: Path) -> None:
    good = "Time,28-12-2020 15:21:14.682,Watts,95.3,Volts,229.4,Amps,0.6,PF,0.67,Mark,m\n"
    path = _write(tmp_path, "spl.txt", good + "Time,28-12-2020 15:21:15.682,Watts,n/a,Mark,m\n")
    with pytest.raises(TraceFormatError, match=r"spl\.txt:2: Watts value 'n/a' is not a number"):
        import_trace(path)
    path = _write(tmp_path, "spl.txt", good + "Time,2020/12/28 15:21:15,Watts,95,Mark,m\n")
    with pytest.raises(TraceFormatError, match=r"spl\.txt:2: cannot read time"):
        import_trace(path)
    path = _write(tmp_path, "spl.txt", good + "garbage line\n")
    with pytest.raises(TraceFormatError, match=r"spl\.txt:2: not a PTDaemon sample line"):
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
    assert trace.t0 == pytest.approx(first + 0.5)


def test_tegrastats_jp4_unitless_without_dates() -> None:
    trace = import_trace(FIXTURES / "tegrastats_nano_jp4.log")
    assert trace.meta["rail"] == "POM_5V_IN"
    assert "without unit" in trace.meta["rail_units"]
    np.testing.assert_allclose(trace.power_w, [1.289, 4.520, 4.480])
    np.testing.assert_allclose(trace.t_s, [0.0, 1.0, 2.0])
    assert trace.sample_rate_hz == 1.0
    fast = import_trace(FIXTURES / "tegrastats_nano_jp4.log",
                        options=ImportOptions(interval_ms=250))
    np.testing.assert_allclose(fast.t_s, [0.0, 0.25, 0.5])


def test_tegrastats_agx_without_input_rail_sums_rails(tmp_path: Path) -> None:
    line = ("RAM 2345/31927MB (lfb 6929x4MB) SWAP 0/15963MB (cached 0MB) CPU [1%@1190,2%@1190] "
            "EMC_FREQ 0%@2133 GR3D_FREQ 0%@1377 APE 150 MTS fg 0% bg 0% AO@33C GPU@33.5C "
            "Tboard@33C GPU 0/0 CPU 311/311 SOC 1554/1554 CV 0/0 VDDRQ 310/310 SYS5V 1816/1816\n")
    path = _write(tmp_path, "agx.log", line * 2)
    trace = import_trace(path)
    assert trace.meta["rail"] == "sum of GPU+CPU+SOC+CV+VDDRQ+SYS5V"
    np.testing.assert_allclose(trace.power_w, 3.991)
    soc = import_trace(path, options=ImportOptions(rail="SOC"))
    np.testing.assert_allclose(soc.power_w, 1.554)
    with pytest.raises(TraceInputError, match=r"agx\.log:1: no rail 'VDD_IN'"):
        import_trace(path, options=ImportOptions(rail="VDD_IN"))


def test_tegrastats_subsecond_interval_with_whole_second_dates(tmp_path: Path) -> None:
    # 500 ms interval: each whole-second date appears twice; the fitted line recovers 2 Hz.
    rail = "VDD_IN {p}mW/{p}mW"
    lines = [f"01-02-2024 10:00:{i // 2:02d} RAM 1/2MB {rail.format(p=1000 + i)}\n"
             for i in range(10)]
    path = _write(tmp_path, "t.log", "".join(lines))
    trace = import_trace(path, options=ImportOptions(interval_ms=500))
    assert trace.uniform and trace.sample_rate_hz == pytest.approx(2.0)
    assert trace.meta["notes"] == []


def test_tegrastats_iso_dates_with_fraction(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.log",
                  "[2024-01-02 10:00:00.250] RAM 1/2MB VDD_IN 5000mW/5000mW\n"
                  "[2024-01-02 10:00:00.750] RAM 1/2MB VDD_IN 6000mW/5500mW\n"
                  "[2024-01-02 10:00:01.250] RAM 1/2MB VDD_IN 7000mW/6000mW\n")
    trace = import_trace(path)
    base = datetime(2024, 1, 2, 10, tzinfo=UTC).timestamp()
    assert trace.t0 == pytest.approx(base + 0.25)
    assert trace.sample_rate_hz == pytest.approx(2.0)


def test_tegrastats_malformed_lines(tmp_path: Path) -> None:
    good = "RAM 1/2MB POM_5V_IN 4520/4680\n"
    path = _write(tmp_path, "t.log", good + "tegrastats: interrupted\n")
    with pytest.raises(TraceFormatError, match=r"t\.log:2: no power rails"):
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
        import_trace(FIXTURES / "spl.txt", options=ImportOptions(time_unit="ms"))


def test_forced_format_mismatch_names_line() -> None:
    with pytest.raises(TraceFormatError, match=r"piecewise_10hz\.csv:1: not a PTDaemon"):
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
