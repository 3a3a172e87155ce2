"""Directory trees laid out like a device's /sys, for the meter drivers' tests."""

from __future__ import annotations

from pathlib import Path


def ina_hwmon(root: Path, n: int, chip: str, i2c: str, *, mv: int, ma: int, uw: int,
              old_layout: bool = False) -> Path:
    """/sys/class/hwmon/hwmon<N> for an ina2xx sensor, its ``device`` link to the I2C client."""
    client = root / "sys/devices/platform/soc/fe804000.i2c/i2c-1" / i2c
    client.mkdir(parents=True)
    hwmon = root / "sys/class/hwmon" / f"hwmon{n}"
    hwmon.mkdir(parents=True)
    (hwmon / "device").symlink_to(client)
    (hwmon / "name").write_text(f"{chip}\n")
    attrs = client if old_layout else hwmon
    for name, value in {"in0_input": 3, "in1_input": mv, "curr1_input": ma,
                        "power1_input": uw}.items():
        (attrs / name).write_text(f"{value}\n")
    return hwmon
