"""Timing runs: warm-up, then N timed calls; medians, p99, throughput, peak memory and energy per run.
``interleaved_samples`` times several runners side by side (what every comparison benchmark uses)."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .memory import peak_rss_bytes
from .sensors import EnergyReading, energy_sensor


def interleaved_samples(runners: Mapping[str, Callable[[], Any]], runs: int, *, warmup: int = 2,
                        block: int = 5) -> dict[str, list[float]]:
    """Time several runners side by side: alternate them in blocks of ``block`` calls until
    each has ``runs`` samples (milliseconds). Benchmarks that compare runtimes use this.

    Blocks, not single calls: each runtime keeps its own thread pool, and a pool that just ran
    spins for a while; call-by-call alternation would time one runtime against the other's
    spinning threads (on 2 cores that made two identical ORT sessions differ 8x). The first
    ``warmup`` calls of every block are not counted, and the starting runner rotates so none
    always follows the same neighbour.
    """
    samples: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners.items())
    turn = 0
    while any(len(v) < runs for v in samples.values()):
        for name, run in order[turn % len(order):] + order[:turn % len(order)]:
            for i in range(warmup + block):
                start = time.perf_counter()
                run()
                if i >= warmup and len(samples[name]) < runs:
                    samples[name].append((time.perf_counter() - start) * 1e3)
        turn += 1
    return samples


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of ``samples``; the p99 of 20 runs is the slowest."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class BenchmarkResult:
    runs: int
    warmup: int
    median_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    items_per_run: int
    tokens_per_run: int | None
    items_per_second: float
    tokens_per_second: float | None
    peak_memory_bytes: int
    peak_memory_source: str
    energy: EnergyReading
    samples_ms: list[float] = field(default_factory=list)

    def to_dict(self, *, samples: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["energy"] = self.energy.to_dict()
        if not samples:
            data.pop("samples_ms")
        return data


def measure(fn: Callable[[], Any], *, warmup: int = 3, runs: int = 20, min_runs: int = 3,
            budget_s: float | None = None, items_per_run: int = 1, tokens_per_run: int | None = None,
            device_kind: str = "cpu", device_index: int | None = None,
            peak_memory_source: str = "process peak RSS") -> BenchmarkResult:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed (``budget_s`` may stop early
    after ``min_runs``). Throughput is items (batch) and tokens (batch x sequence) per median run."""
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    sensor, why = energy_sensor(device_kind, device_index)
    samples: list[float] = []
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    start_energy = sensor.read() if sensor else None
    while len(samples) < runs:
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
        if deadline is not None and len(samples) >= min_runs and time.perf_counter() > deadline:
            break
    energy = EnergyReading(None, "none", why)
    if sensor is not None:
        joules = sensor.joules(start_energy, sensor.read())
        energy = EnergyReading(joules / len(samples), sensor.name,
                               "CPU package energy (RAPL), not wall power" if sensor.name == "rapl"
                               else "GPU board energy (NVML), not wall power")
    median = statistics.median(samples)
    per_second = 1e3 / median if median > 0 else math.inf
    return BenchmarkResult(
        runs=len(samples), warmup=warmup, median_ms=median, p99_ms=percentile(samples, 99),
        mean_ms=statistics.fmean(samples), min_ms=min(samples), max_ms=max(samples),
        items_per_run=items_per_run, tokens_per_run=tokens_per_run,
        items_per_second=items_per_run * per_second,
        tokens_per_second=None if tokens_per_run is None else tokens_per_run * per_second,
        peak_memory_bytes=peak_rss_bytes(), peak_memory_source=peak_memory_source,
        energy=energy, samples_ms=samples)


def benchmark_executable(executable: Any, feeds: Mapping[str, np.ndarray], *, warmup: int = 3, runs: int = 20,
                         budget_s: float | None = None, batch_axis: str = "batch",
                         tokens_axis: str | None = None, dims: Mapping[str, int] | None = None,
                         peak_memory_source: str = "process peak RSS") -> BenchmarkResult:
    """Benchmark ``executable.run(feeds)``; items = the ``batch_axis`` size, tokens = items x ``tokens_axis``."""
    dims = dict(dims or {})
    sizes = _symbolic_sizes(executable.inputs, feeds)
    sizes.update(dims)
    items = int(sizes.get(batch_axis, 1))
    tokens = items * int(sizes[tokens_axis]) if tokens_axis and tokens_axis in sizes else None
    checked = dict(feeds)
    executable.run(checked)  # validates the feeds once, so the timed runs skip the check
    kind = getattr(getattr(executable, "target", None), "device", None) or "cpu"
    return measure(lambda: executable.run(checked, check=False), warmup=warmup, runs=runs, budget_s=budget_s,
                   items_per_run=items, tokens_per_run=tokens, device_kind=kind,
                   device_index=getattr(executable.target, "index", None), peak_memory_source=peak_memory_source)


def _symbolic_sizes(specs: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for spec in specs:
        array = feeds.get(spec.name)
        if array is None or spec.shape is None:
            continue
        for dim, size in zip(spec.shape, np.shape(array)):
            if isinstance(dim, str):
                sizes.setdefault(dim, int(size))
    return sizes


__all__ = ["BenchmarkResult", "benchmark_executable", "interleaved_samples", "measure", "percentile"]
