"""CPU clocks and thermal zones from a directory laid out like /sys."""

from __future__ import annotations

from pathlib import Path

from agent.system import compare_conditions, read_conditions, read_cpu_freqs, read_thermal_zones


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def make_sysfs(root: Path, *, cap_khz: int = 1800000, temp_mc: int = 45000) -> None:
    # cpu10 sorts after cpu2: discovery must order naturally, not lexically.
    for cpu in (0, 2, 10):
        base = f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        write(root, f"{base}/scaling_cur_freq", "1500000")
        write(root, f"{base}/scaling_min_freq", "600000")
        write(root, f"{base}/scaling_max_freq", str(cap_khz))
        write(root, f"{base}/cpuinfo_max_freq", "1800000")
        write(root, f"{base}/scaling_governor", "schedutil")
    write(root, "sys/devices/system/cpu/cpufreq/policy0/scaling_governor", "schedutil")
    write(root, "sys/class/thermal/thermal_zone0/type", "cpu-thermal")
    write(root, "sys/class/thermal/thermal_zone0/temp", str(temp_mc))
    write(root, "sys/class/thermal/thermal_zone0/trip_point_0_type", "passive")
    write(root, "sys/class/thermal/thermal_zone0/trip_point_0_temp", "80000")
    write(root, "sys/class/thermal/thermal_zone0/trip_point_1_type", "critical")
    write(root, "sys/class/thermal/thermal_zone0/trip_point_1_temp", "90000")


def test_reads_frequencies_governors_and_zones(tmp_path: Path) -> None:
    make_sysfs(tmp_path)
    cpus = read_cpu_freqs(tmp_path)
    assert [c.cpu for c in cpus] == [0, 2, 10]
    assert cpus[0].cur_khz == 1500000 and cpus[0].governor == "schedutil" and not cpus[0].capped
    (zone,) = read_thermal_zones(tmp_path)
    assert zone.zone_type == "cpu-thermal" and zone.temp_c == 45.0 and zone.passive_trip_c == 80.0
    conditions = read_conditions(tmp_path)
    assert conditions.flags == ()
    assert conditions.as_dict()["thermal_zone0_cpu-thermal_c"] == 45.0


def test_throttling_is_flagged(tmp_path: Path) -> None:
    hot = tmp_path / "hot"
    make_sysfs(hot, temp_mc=79000)
    assert read_conditions(hot).flags == ("thermal_trip_reached",)
    capped = tmp_path / "capped"
    make_sysfs(capped, cap_khz=1200000)
    assert "cpu_frequency_capped" in read_conditions(capped).flags
    cool = tmp_path / "cool"
    make_sysfs(cool)
    assert compare_conditions(read_conditions(cool), read_conditions(capped)) == (
        "cpu_frequency_capped",)


def test_missing_sysfs_means_nothing_known(tmp_path: Path) -> None:
    conditions = read_conditions(tmp_path)
    assert conditions.cpus == () and conditions.zones == () and conditions.flags == ()
