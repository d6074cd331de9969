"""Energy proxies: measured counters first, an estimate only when nothing is measurable (and labelled so).

* RAPL (``/sys/class/powercap/*/energy_uj``): measured joules of the whole CPU package (every process on
  the machine), read around the timed runs. Usually readable by root only.
* Otherwise joules are *estimated* from the target's power model:
  ``cpu_seconds × active_watts_per_core + wall_seconds × idle_watts``, with the inputs reported.
* Battery (``psutil.sensors_battery``): percent before and after when the machine runs on battery.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RaplDomain:
    name: str
    path: Path
    max_uj: int


def rapl_domains() -> list[RaplDomain]:
    """Readable top-level RAPL package domains (empty when none are readable)."""
    out = []
    for energy in sorted(glob.glob("/sys/class/powercap/intel-rapl:*/energy_uj")):
        p = Path(energy)
        if p.parent.name.count(":") != 1:  # sub-domains (core, uncore, dram) are inside the package figure
            continue
        try:
            int(p.read_text())
            name = (p.parent / "name").read_text().strip()
            max_uj = int((p.parent / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            continue
        out.append(RaplDomain(name, p, max_uj))
    return out


def read_rapl(domains: list[RaplDomain]) -> list[int] | None:
    try:
        return [int(d.path.read_text()) for d in domains]
    except (OSError, ValueError):
        return None


def rapl_joules(domains: list[RaplDomain], before: list[int] | None, after: list[int] | None) -> float | None:
    if not domains or before is None or after is None:
        return None
    total = 0
    for d, a, b in zip(domains, before, after):
        total += (b - a) if b >= a else (d.max_uj - a + b)  # the counter wraps at max_energy_range_uj
    return total / 1e6


def cpu_freq_mhz() -> dict | None:
    import psutil

    try:
        f = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None
    if f is None or not f.current:
        return None
    return {
        "current": round(f.current, 1),
        "min": round(f.min, 1) if f.min else None,
        "max": round(f.max, 1) if f.max else None,
    }


def battery() -> dict | None:
    import psutil

    try:
        b = psutil.sensors_battery()
    except (OSError, NotImplementedError, AttributeError):
        return None
    if b is None:
        return None
    return {"percent": b.percent, "on_battery": not b.power_plugged}


def estimate_joules(cpu_seconds: float, wall_seconds: float, active_watts_per_core: float, idle_watts: float) -> float:
    """The power-model estimate (see the module docstring)."""
    return cpu_seconds * active_watts_per_core + wall_seconds * idle_watts


def battery_change(before: dict | None, after: dict | None) -> dict | None:
    """The battery's state around a measurement (None on machines without one)."""
    if before is None:
        return None
    return {"before": before, "after": after, "note": "drain is meaningful only on battery and for long runs"}
