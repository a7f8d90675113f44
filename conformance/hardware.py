"""Hardware profiles (sourced data in ``data/hardware.json``) and measurements of this machine.

``measure_local()`` times a large array copy (memory bandwidth, read + write
counted, like a STREAM copy, on one thread per core) and a float32 matmul (FLOP/s)
with NumPy: a few seconds, enough to place this machine on a roofline.
``copy_bandwidth`` is that copy alone, at any footprint (``tools/bench_decode.py``
measures it at several, since a step's bytes may sit in a large last-level cache).
"""

from __future__ import annotations

import functools
import json
import re
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


def copy_bandwidth(footprint_mib: float, *, repeats: int = 5, threads: int | None = None) -> list[float]:
    """Bytes/s (read + written) of each of ``repeats`` NumPy copies whose source and destination together
    take ``footprint_mib``, split over ``threads`` (default: one per core this process may use; NumPy
    releases the GIL while copying, and one core alone rarely saturates the memory bus)."""
    from concurrent.futures import ThreadPoolExecutor

    threads = max(1, threads or cpu_count())
    source = np.ones(max(1, int(footprint_mib * (1 << 20)) // 16), dtype=np.float64)  # half the footprint each
    target = np.empty_like(source)
    np.copyto(target, source)  # touch the pages first
    chunks = list(zip(np.array_split(target, threads), np.array_split(source, threads)))
    rates = []
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(lambda chunk: np.copyto(*chunk), chunks))
            rates.append(2 * source.nbytes / (time.perf_counter() - start))
    return rates


def measure_local(*, copy_mib: int = 256, matmul_n: int = 1024, repeats: int = 5) -> LocalMeasurement:
    """Best-of-``repeats`` copy bandwidth (a ``copy_mib`` source on every core) and matmul FLOP/s of this
    machine (NumPy, all cores it uses)."""
    start = time.perf_counter()
    best_copy = max(copy_bandwidth(2 * copy_mib, repeats=repeats))
    a = np.random.default_rng(0).standard_normal((matmul_n, matmul_n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((matmul_n, matmul_n), dtype=np.float32)
    a @ b
    best_matmul = min(_timed(lambda: a @ b) for _ in range(repeats))
    return LocalMeasurement(cpu=cpu_name(), cores=cpu_count(), bandwidth_gbs=best_copy / 1e9,
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
    base, matched = _matching_cpu_profile(measurement.cpu)
    tdp = Sourced(None)
    if base is not None and base.tdp_w.value and base.cores:
        share = base.tdp_w.value * measurement.cores / base.cores
        tdp = Sourced(share, f"{base.tdp_w.value:g} W TDP of {matched} x {measurement.cores}/{base.cores} cores "
                             f"used here ({base.tdp_w.source})", base.tdp_w.date, "I")
    price = cpu_vcpu_price()
    hourly = Sourced(price["usd_per_vcpu_hour"] * measurement.cores,
                     f"{price['usd_per_vcpu_hour']:g} $/vCPU-h ({price['family']}; {price['source']}) x "
                     f"{measurement.cores} vCPUs used here", price["date"], "I" if price["tag"] == "R" else price["tag"])
    return HardwareProfile(
        name="local", kind="cpu", cores=measurement.cores, cloud_usd_per_hour=hourly,
        description=f"this machine: {measurement.cpu}, {measurement.cores} cores"
                    + (f" (power share of {matched})" if base else ""),
        bandwidth_tbs=Sourced(measurement.bandwidth_gbs / 1e3, "measured: NumPy copy on every core, read+write",
                              when, "M"),
        fp16_tflops=Sourced(measurement.matmul_gflops / 1e3, "measured: NumPy float32 matmul (not fp16)", when, "M"),
        tdp_w=tdp)


def cpu_vcpu_price() -> dict[str, Any]:
    """The sourced cloud $/vCPU-hour that prices CPU targets (data/hardware.json ``cpu_prices``)."""
    table = _data()["cpu_prices"]
    return table["entries"][table["default"]]


# the CPU profile that stands in for a vendor whose model this machine does not report (VMs often say only
# "AMD EPYC"), or reports without a profile of its own
_VENDOR_PROFILES = (("epyc", "epyc-9654"), ("amd", "epyc-9654"), ("xeon", "xeon-8480"), ("intel", "xeon-8480"))


def _matching_cpu_profile(cpu: str) -> tuple[HardwareProfile | None, str]:
    """The CPU profile whose power stands in for this machine's, and how it was chosen: the profile of the
    model the CPU names (its number, e.g. 9654 or 6980P, as a word), else its vendor's, said to be assumed."""
    text = cpu.lower()
    cpu_profiles = {name: profile for name, profile in profiles().items() if profile.kind == "cpu"}
    for name, profile in cpu_profiles.items():
        number = name.split("-")[-1]
        if re.search(rf"(?<![0-9a-z]){re.escape(number)}(?![0-9a-z])", text):
            return profile, f"{profile.name}: the model this CPU reports"
    for word, name in _VENDOR_PROFILES:
        if word in text and name in cpu_profiles:
            model = re.search(r"\b\d{4,5}[a-z]?\b", text)
            why = f"model {model.group(0)} has no profile" if model else "the CPU reports no model"
            return cpu_profiles[name], f"{name} assumed ({why})"
    return None, "no CPU profile matches"


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
