"""Device power profiles for the simulated meter.

The numbers are plausible orders of magnitude for each board (idle and loaded power, the
resolution of its usual on-board sensor), not measurements: a simulated run is always stored
and shown as simulated.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PowerProfile:
    """How a simulated device turns work into power. Units are in the field names."""

    name: str
    description: str
    idle_w: float
    # Extra power while the CPU runs anything (Python overhead, busy loops of the sync pattern).
    busy_w: float
    # Extra power at full compute intensity (MAC rate at or above peak_macs_per_s).
    peak_dynamic_w: float
    peak_macs_per_s: float
    # Extra power per byte/s of weight and activation traffic (memory-bound layers cost power
    # too); DRAM costs roughly 0.05-0.15 nJ per byte.
    w_per_byte_per_s: float
    # Per-sample gaussian measurement noise and the sensor's power resolution.
    noise_w: float
    lsb_w: float
    default_sample_rate_hz: float


PROFILES: dict[str, PowerProfile] = {
    p.name: p
    for p in [
        PowerProfile(
            name="host",
            description="this x86-64 host, modelled as a laptop-class package (RAPL-like)",
            idle_w=6.0,
            busy_w=7.5,
            peak_dynamic_w=9.0,
            peak_macs_per_s=40e9,
            w_per_byte_per_s=0.05e-9,
            noise_w=0.15,
            lsb_w=0.001,
            default_sample_rate_hz=20_000.0,
        ),
        PowerProfile(
            name="rpi4",
            description="Raspberry Pi 4 Model B board input, INA219 on the 5 V rail",
            idle_w=2.7,
            busy_w=0.9,
            peak_dynamic_w=2.6,
            peak_macs_per_s=6e9,
            w_per_byte_per_s=0.1e-9,
            noise_w=0.04,
            lsb_w=0.02,  # INA219 power register LSB at a typical calibration
            default_sample_rate_hz=10_000.0,
        ),
        PowerProfile(
            name="jetson-orin-nano",
            description="Jetson Orin Nano module input (VDD_IN), INA3221-like quantisation",
            idle_w=4.6,
            busy_w=1.4,
            peak_dynamic_w=4.2,
            peak_macs_per_s=12e9,
            w_per_byte_per_s=0.08e-9,
            noise_w=0.06,
            lsb_w=0.04,  # 8 mA steps at 5 V
            default_sample_rate_hz=10_000.0,
        ),
    ]
}


def get_profile(name: str) -> PowerProfile:
    """Return the named profile, or raise ValueError listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown simulated device profile {name!r} (known: {known})") from None
