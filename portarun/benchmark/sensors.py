"""Energy per run from a sensor when one is readable: NVML board power for CUDA targets (``pynvml``),
Linux powercap RAPL (``/sys/class/powercap/intel-rapl:*``) for CPUs. Otherwise the reading says
``energy: not measured`` and why; nothing is estimated behind the user's back. RAPL measures the CPU
package(s), NVML the GPU board: neither is wall power (MLPerf measures AC wall power), and the reading
names which one it used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class EnergyReading:
    joules_per_run: float | None
    sensor: str  # "rapl", "nvml", or "none"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _RaplSensor:
    """Sum of package energy counters under /sys/class/powercap (microjoules, wrapping)."""

    name = "rapl"
    ROOT = Path("/sys/class/powercap")

    def __init__(self) -> None:
        self.zones = []
        for zone in sorted(self.ROOT.glob("intel-rapl:*")):
            if zone.name.count(":") != 1:  # packages only; sub-zones are inside them
                continue
            energy, limit = zone / "energy_uj", zone / "max_energy_range_uj"
            int(energy.read_text())  # raises when unreadable (root-only since 2020 on many kernels)
            self.zones.append((energy, int(limit.read_text()) if limit.exists() else 2**32))
        if not self.zones:
            raise OSError("no RAPL package zones")

    def read(self) -> list[int]:
        return [int(path.read_text()) for path, _ in self.zones]

    def joules(self, start: list[int], end: list[int]) -> float:
        total = 0
        for (_, wrap), a, b in zip(self.zones, start, end):
            total += b - a if b >= a else b + wrap - a
        return total / 1e6


class _NvmlSensor:
    """Total energy counter of one NVIDIA GPU (millijoules; Volta and newer)."""

    name = "nvml"

    def __init__(self, index: int = 0) -> None:
        import pynvml  # noqa: PLC0415 - optional, only where NVIDIA drivers exist

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def read(self) -> int:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def joules(self, start: int, end: int) -> float:
        return (end - start) / 1e3


def energy_sensor(device_kind: str = "cpu", index: int | None = None) -> tuple[Any | None, str]:
    """A readable sensor for the device kind, or (None, why not)."""
    if device_kind in ("cuda", "gpu", "tensorrt"):
        try:
            return _NvmlSensor(index or 0), ""
        except Exception as exc:  # no pynvml, no driver, or an old GPU without the counter
            return None, f"NVML energy counter not readable ({type(exc).__name__}: {exc})"
    if device_kind == "cpu":
        try:
            return _RaplSensor(), ""
        except (OSError, ValueError) as exc:
            return None, f"RAPL not readable ({exc}); it is root-only on many kernels"
    return None, f"no energy sensor known for device kind '{device_kind}'"


__all__ = ["EnergyReading", "energy_sensor"]
