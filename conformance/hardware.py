"""Hardware profiles (sourced data in ``data/hardware.json``) and measurements of this machine.

``measure_local()`` times a large array copy (memory bandwidth, read + write
counted, like a STREAM copy) and a float32 matmul (FLOP/s) with NumPy: a few
seconds, enough to place this machine on a roofline.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np

from portarun import UsageError
from portarun.plugin import cpu_count, cpu_name
from portarun.cost import CostAssumptions, HardwareProfile, Sourced


@functools.lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("data/hardware.json").read_text())


def profiles() -> dict[str, HardwareProfile]:
    return {name: HardwareProfile.from_dict(name, entry) for name, entry in _data()["profiles"].items()}


def get_profile(name: str) -> HardwareProfile:
    known = profiles()
    if name in known:
        return known[name]
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    raise UsageError(f"no hardware profile named '{name}'",
                     hint=f"did you mean '{close[0]}'?" if close else f"profiles: {', '.join(known)}")


def default_assumptions(**overrides: Any) -> CostAssumptions:
    """The sourced defaults from the data file, with the user's overrides (None = keep the default)."""
    defaults = {key: entry["value"] for key, entry in _data()["cost_defaults"].items()}
    defaults.update({k: v for k, v in overrides.items() if v is not None})
    return CostAssumptions(**defaults)


def cost_defaults() -> dict[str, Any]:
    return dict(_data()["cost_defaults"])


@dataclass
class LocalMeasurement:
    cpu: str
    cores: int
    bandwidth_gbs: float  # copy bandwidth, bytes read + written per second / 1e9
    matmul_gflops: float  # float32 matmul, 2*n^3 per product
    matmul_n: int
    copy_mib: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_local(*, copy_mib: int = 256, matmul_n: int = 1024, repeats: int = 5) -> LocalMeasurement:
    """Best-of-``repeats`` copy bandwidth and matmul FLOP/s of this machine (NumPy, all cores it uses)."""
    start = time.perf_counter()
    source = np.ones(copy_mib * 2**20 // 8, dtype=np.float64)
    target = np.empty_like(source)
    np.copyto(target, source)  # touch the pages first
    best_copy = min(_timed(lambda: np.copyto(target, source)) for _ in range(repeats))
    a = np.random.default_rng(0).standard_normal((matmul_n, matmul_n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((matmul_n, matmul_n), dtype=np.float32)
    a @ b
    best_matmul = min(_timed(lambda: a @ b) for _ in range(repeats))
    return LocalMeasurement(cpu=cpu_name(), cores=cpu_count(), bandwidth_gbs=2 * source.nbytes / best_copy / 1e9,
                            matmul_gflops=2 * matmul_n**3 / best_matmul / 1e9, matmul_n=matmul_n, copy_mib=copy_mib,
                            seconds=time.perf_counter() - start)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def local_profile(measurement: LocalMeasurement | None = None) -> HardwareProfile:
    """This machine as a profile: measured bandwidth and FLOP/s; the power and price of a matching
    CPU profile charged for the share of cores used here (inferred), when one matches."""
    measurement = measurement or measure_local(copy_mib=64, matmul_n=512, repeats=3)
    when = time.strftime("%Y-%m-%d")
    base = _matching_cpu_profile(measurement.cpu)
    tdp = Sourced(None)
    if base is not None and base.tdp_w.value and base.cores:
        share = base.tdp_w.value * measurement.cores / base.cores
        tdp = Sourced(share, f"{base.tdp_w.value:g} W TDP of {base.name} x {measurement.cores}/{base.cores} cores "
                             f"used here ({base.tdp_w.source})", base.tdp_w.date, "I")
    price = cpu_vcpu_price()
    hourly = Sourced(price["usd_per_vcpu_hour"] * measurement.cores,
                     f"{price['usd_per_vcpu_hour']:g} $/vCPU-h ({price['family']}; {price['source']}) x "
                     f"{measurement.cores} vCPUs used here", price["date"], "I" if price["tag"] == "R" else price["tag"])
    return HardwareProfile(
        name="local", kind="cpu", cores=measurement.cores, cloud_usd_per_hour=hourly,
        description=f"this machine: {measurement.cpu}, {measurement.cores} cores"
                    + (f" (power share of {base.name})" if base else ""),
        bandwidth_tbs=Sourced(measurement.bandwidth_gbs / 1e3, "measured: NumPy copy, read+write", when, "M"),
        fp16_tflops=Sourced(measurement.matmul_gflops / 1e3, "measured: NumPy float32 matmul (not fp16)", when, "M"),
        tdp_w=tdp)


def cpu_vcpu_price() -> dict[str, Any]:
    """The sourced cloud $/vCPU-hour that prices CPU targets (data/hardware.json ``cpu_prices``)."""
    table = _data()["cpu_prices"]
    return table["entries"][table["default"]]


def _matching_cpu_profile(cpu: str) -> HardwareProfile | None:
    text = cpu.lower()
    if "epyc" in text or "amd" in text:
        return profiles().get("epyc-9654")
    if "xeon" in text or "intel" in text:
        return profiles().get("xeon-8480")
    return None


def profile_for(name: str | None, target: str) -> HardwareProfile | None:
    """The profile to price ``target`` with: the one named, else ``local`` for CPU targets, else None."""
    if name and name != "local":
        return get_profile(name)
    device = target.split(":")[1] if ":" in target else "cpu"
    if name == "local" or device == "cpu":
        return _cached_local()
    return None


@functools.lru_cache(maxsize=1)
def _cached_local() -> HardwareProfile:
    return local_profile()
