"""Measure an Executable: warm-up, then N timed runs; medians, p99, throughput, peak memory, energy.

Energy comes from a sensor when one is readable: NVML board power for CUDA
targets (``pynvml``), Linux powercap RAPL (``/sys/class/powercap/intel-rapl:*``)
for CPUs. Otherwise the result says ``energy: not measured`` and why; nothing is
estimated behind the user's back. RAPL measures the CPU package(s), NVML the GPU
board: neither is wall power (MLPerf measures AC wall power), and the result
names which one it used.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np


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


def reset_peak_memory() -> bool:
    """Start a new peak-RSS window (Linux: writing 5 to /proc/self/clear_refs resets VmHWM).

    A conformance worker serves many cells; without the reset every cell would report the
    largest peak of all the cells before it. Returns False where the kernel does not allow it.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since start or the last ``reset_peak_memory``.

    Linux: VmHWM from /proc/self/status; elsewhere ru_maxrss (macOS reports bytes, Linux KiB).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


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


# --- the batch sweep `portarun bench` prints (and a plan command or a fleet driver calls) ---------------

BATCH_AXES = ("batch", "batch_size", "N", "n")
SEQUENCE_AXES = ("seq", "sequence", "sequence_length", "seq_len")


def symbolic_axis(inputs: Any, candidates: tuple[str, ...], position: int | None) -> str | None:
    """The symbolic dim name used for the batch (first axis) or the sequence."""
    for spec in inputs:
        for axis, dim in enumerate(spec.shape or ()):
            if isinstance(dim, str) and (dim in candidates or (position is not None and axis == position)):
                return dim
    return None


def decoder_signature(exe: Any) -> Any | None:
    """The KV-cache layout when ``exe`` is a decoder (input_ids -> logits with past/present), else None."""
    from .errors import PortarunError
    from .generate import DecoderSignature

    try:
        return DecoderSignature.of(exe)
    except PortarunError:
        return None


def bench_decoder(exe: Any, sig: Any, batch: int, prompt_len: int, new_tokens: int, reps: int, *,
                  warmup: int = 1, seed: int = 0) -> dict[str, Any]:
    """Greedy generation: TTFT (prefill), TPOT (each later token), decode tokens/s; median of ``reps``
    after ``warmup`` untimed two-token generations (they compile both the prefill and the one-token shapes)."""
    from .generate import generate

    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, sig.vocab or 100, size=(batch, prompt_len))
    for _ in range(warmup):
        generate(exe, prompt, 2)
    results = sorted((generate(exe, prompt, new_tokens) for _ in range(max(1, reps))), key=lambda r: r.total_s)
    best = results[len(results) // 2]
    kv_heads, head_dim = sig.kv_shape
    kv_per_position = len(sig.past) * kv_heads * head_dim * np.dtype(sig.cache_dtype).itemsize
    return {"ttft_ms": best.ttft_s * 1e3, "tpot_median_ms": best.tpot_median_s * 1e3,
            "tpot_p99_ms": best.tpot_p99_s * 1e3, "decode_tokens_per_s": best.decode_tokens_per_s,
            "generated_tokens": best.generated_tokens,
            # KV bytes one sequence reads per decode step, at the mean context length of the run
            "kv_bytes_per_token": kv_per_position * (prompt_len + new_tokens / 2)}


def choose_batch(rows: list[dict[str, Any]], max_latency_ms: float | None) -> dict[str, Any] | None:
    """The row meeting the latency limit at the lowest cost per 1M (or the highest throughput when unpriced)."""
    eligible = [r for r in rows if max_latency_ms is None or r["median_ms"] <= max_latency_ms]
    if not eligible:
        return None
    if all(r.get("usd_per_million") is not None for r in eligible):
        return min(eligible, key=lambda r: (r["usd_per_million"], r["median_ms"]))
    return max(eligible, key=lambda r: r["per_second"])


@dataclass
class SweepConfig:
    """A batch sweep: which batch sizes, how the feeds are sized, how long to measure, the latency limit."""

    batches: list[int] = field(default_factory=lambda: [1])
    seq: int | None = None  # sequence length (prompt length for decoders; default dims["seq"] or 16)
    dims: dict[str, int] = field(default_factory=dict)  # sizes of other symbolic dims (built-in defaults first)
    runs: int = 20  # timed runs per batch (decoders: min(runs, 3) generations)
    warmup: int = 3  # untimed runs before timing
    max_latency_ms: float | None = None  # median latency limit (TTFT for decoders) for the chosen batch
    new_tokens: int = 32  # decoders: tokens generated per run
    seed: int = 0  # of the random feeds (prompt tokens for decoders)
    # the user's feeds (checked feed dicts, portarun.samples): the first one is measured at the batch
    # size it has, instead of random feeds per batch size; None: random feeds that respect the graph
    feeds: list[dict[str, Any]] | None = None


@dataclass
class SweepResult:
    """One row per batch size (plain dicts, as written to JSON) and the batch chosen under the limit."""

    model: str
    provenance: dict[str, Any]
    hourly: Any  # portarun.cost.HourlyCost
    profile: Any | None  # portarun.cost.HardwareProfile used for price and roofline
    config: SweepConfig
    weight_bytes: int
    rows: list[dict[str, Any]]
    decoder: bool = False

    @property
    def chosen(self) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["chosen"]), None)

    @property
    def unit(self) -> str:
        return self.rows[0]["unit"] if self.rows else "items"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "provenance": self.provenance, "hourly": self.hourly.to_dict(),
                "max_latency_ms": self.config.max_latency_ms, "weight_bytes": self.weight_bytes, "rows": self.rows}


def sweep(executable: Any, config: SweepConfig, *, profile: Any | None = None, assumptions: Any | None = None,
          progress: Callable[[dict[str, Any]], None] | None = None) -> SweepResult:
    """Measure ``executable`` at each batch size of ``config``; price each row with ``profile`` under
    ``assumptions`` (portarun.cost), add the memory-roofline fraction, and mark the cheapest batch that
    meets ``config.max_latency_ms``. Decoders are measured by greedy generation (TTFT/TPOT/decode tokens/s).
    ``progress`` gets each row as it is measured. The caller owns (and closes) ``executable``."""
    from .cost import CostAssumptions, hourly_cost, weight_bytes

    hourly = hourly_cost(profile, assumptions or CostAssumptions())
    weights = weight_bytes(executable.model)
    signature = decoder_signature(executable)
    batches = config.batches
    if config.feeds:
        if signature is not None:
            from .errors import UsageError

            raise UsageError("a decoder is measured by generating from a prompt, not from feeds",
                             hint="drop --inputs; use --seq for the prompt length")
        batch_axis = symbolic_axis(executable.inputs, BATCH_AXES, 0) or "batch"
        batches = [_bound_dims(executable.inputs, config.feeds[0]).get(batch_axis, 1)]
    rows = []
    for batch in batches:
        row = (_decoder_row(executable, signature, batch, config, profile, hourly, weights) if signature is not None
               else _feed_row(executable, batch, config, profile, hourly, weights))
        rows.append(row)
        if progress is not None:
            progress(row)
    chosen = choose_batch(rows, config.max_latency_ms)
    if chosen is not None:
        chosen["chosen"] = True
    return SweepResult(executable.model.name, executable.provenance.to_dict(), hourly, profile, config, weights,
                       rows, decoder=signature is not None)


def _roofline_fraction(profile: Any | None, weights: int, per_second: float, tokens_per_pass: int,
                       kv_bytes_per_token: float = 0.0) -> float | None:
    from .cost import memory_roofline

    if profile is None or not profile.bandwidth_tbs.value:
        return None
    return memory_roofline(profile.bandwidth_tbs.value * 1e12, weights, kv_bytes_per_token,
                           tokens_per_pass=tokens_per_pass, achieved_tokens_per_second=per_second).fraction


def _decoder_row(exe: Any, signature: Any, batch: int, config: SweepConfig, profile: Any | None, hourly: Any,
                 weights: int) -> dict[str, Any]:
    from .cost import cost_per_million

    prompt_len = config.seq or config.dims.get("seq", 16)
    gen = bench_decoder(exe, signature, batch, prompt_len, config.new_tokens, min(config.runs, 3),
                        warmup=config.warmup, seed=config.seed)
    priced = cost_per_million(gen["decode_tokens_per_s"], hourly, "tokens")
    return {"batch": batch, "median_ms": gen["ttft_ms"], "p99_ms": gen["tpot_p99_ms"],
            "per_second": gen["decode_tokens_per_s"], "unit": "tokens", "usd_per_million": priced.usd_per_million,
            "roofline_fraction": _roofline_fraction(profile, weights, gen["decode_tokens_per_s"], batch,
                                                    gen["kv_bytes_per_token"]),
            "decoder": gen, "chosen": False}


def _feed_row(exe: Any, batch: int, config: SweepConfig, profile: Any | None, hourly: Any,
              weights: int) -> dict[str, Any]:
    from .cost import cost_per_million
    from .feeds import random_feeds

    batch_axis = symbolic_axis(exe.inputs, BATCH_AXES, 0) or "batch"
    seq_axis = symbolic_axis(exe.inputs, SEQUENCE_AXES, None)
    if config.feeds:
        feeds = config.feeds[0]
        sizes = _bound_dims(exe.inputs, feeds)
    else:
        sizes = {**config.dims, batch_axis: batch}
        if seq_axis and config.seq:
            sizes[seq_axis] = config.seq
        feeds = random_feeds(exe, seed=config.seed, dims=sizes)
    result = benchmark_executable(exe, feeds, warmup=config.warmup, runs=config.runs, batch_axis=batch_axis,
                                  tokens_axis=seq_axis, dims=sizes)
    per_second = result.tokens_per_second or result.items_per_second
    unit = "tokens" if result.tokens_per_second else "items"
    priced = cost_per_million(per_second, hourly, unit)
    return {"batch": batch, "median_ms": result.median_ms, "p99_ms": result.p99_ms, "per_second": per_second,
            "unit": unit, "usd_per_million": priced.usd_per_million,
            "roofline_fraction": _roofline_fraction(profile, weights, per_second,
                                                    result.tokens_per_run or result.items_per_run),
            "benchmark": result.to_dict(), "chosen": False}


def _bound_dims(specs: Any, feeds: dict[str, Any]) -> dict[str, int]:
    """The sizes the user's arrays give the symbolic dims (for counting items and tokens)."""
    sizes: dict[str, int] = {}
    for spec in specs:
        array = feeds.get(spec.name)
        for axis, dim in enumerate(spec.shape or ()):
            if isinstance(dim, str) and array is not None and axis < np.ndim(array):
                sizes.setdefault(dim, int(np.shape(array)[axis]))
    return sizes


@dataclass
class DecodeSpeed:
    """Decode speed of one compiled decoder at one batch: tokens/s counts the tokens after the first
    (decode steps x batch / decode time, prefill excluded), the number a $/1M tokens of a memory-bound
    decoder is about. Medians over ``repeats`` generations after a warm-up; TPOT pooled over all steps."""

    decode_tokens_per_s: float
    tpot_median_ms: float
    tpot_p99_ms: float
    ttft_ms: float
    batch: int
    prompt_tokens: int
    new_tokens: int
    repeats: int
    cache: str
    capacity: int | None
    tokens: list[list[int]]  # greedy tokens of the first timed repeat
    same_tokens_every_repeat: bool
    tokens_per_s_each_repeat: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_decode(executable: Any, prompt_ids: Any, new_tokens: int = 32, *, repeats: int = 3,
                   cache: str = "auto", bucket: int = 128, warmup_tokens: int = 4) -> DecodeSpeed:
    """Decode tokens/s of one compiled decoder (``measure_decode_side_by_side`` with one entry)."""
    return measure_decode_side_by_side({"only": executable}, prompt_ids, new_tokens, repeats=repeats, cache=cache,
                                       bucket=bucket, warmup_tokens=warmup_tokens)["only"]


def measure_decode_side_by_side(executables: Mapping[str, Any], prompt_ids: Any, new_tokens: int = 32, *,
                                repeats: int = 3, cache: str = "auto", bucket: int = 128,
                                warmup_tokens: int = 4) -> dict[str, DecodeSpeed]:
    """Greedy decode tokens/s of several compiled decoders on one prompt, taking turns (round robin:
    each one generation per round), so a noisy neighbour slows them all alike.

    Each gets one warm-up generation of ``warmup_tokens`` at the shapes of the timed ones (a static
    cache keeps one capacity, ``prompt + new_tokens - 1`` rounded up to ``bucket``: no backend compiles
    again while timed). ``cache="auto"`` is static where a backend compiles per shape (XLA), else dynamic.
    """
    from .errors import UsageError
    from .generate import DecoderSignature, generate, resolve_cache, static_capacity

    if repeats < 1 or new_tokens < 2:
        raise UsageError(f"decode speed needs repeats >= 1 and new_tokens >= 2, got {repeats} and {new_tokens}",
                         hint="decode steps are the tokens after the first; ask for at least 2 new tokens")
    prompt = np.asarray(prompt_ids)
    prompt = prompt[None, :] if prompt.ndim == 1 else prompt
    plans = {}
    for name, exe in executables.items():
        mode = resolve_cache(exe, cache, DecoderSignature.of(exe))
        capacity = static_capacity(prompt.shape[1] + new_tokens - 1, bucket) if mode == "static" else None
        generate(exe, prompt, max(2, min(warmup_tokens, new_tokens)), cache=mode, capacity=capacity)
        plans[name] = (exe, mode, capacity, [])
    for _ in range(repeats):
        for exe, mode, capacity, results in plans.values():
            results.append(generate(exe, prompt, new_tokens, cache=mode, capacity=capacity))
    speeds = {}
    for name, (exe, mode, capacity, results) in plans.items():
        steps = [s for r in results for s in r.step_s]
        speeds[name] = DecodeSpeed(
            decode_tokens_per_s=statistics.median(r.decode_tokens_per_s for r in results),
            tpot_median_ms=1e3 * statistics.median(steps), tpot_p99_ms=1e3 * percentile(steps, 99),
            ttft_ms=1e3 * statistics.median(r.ttft_s for r in results), batch=int(prompt.shape[0]),
            prompt_tokens=int(prompt.shape[1]), new_tokens=new_tokens, repeats=repeats, cache=mode, capacity=capacity,
            tokens=results[0].tokens.tolist(),
            same_tokens_every_repeat=all(np.array_equal(r.tokens, results[0].tokens) for r in results),
            tokens_per_s_each_repeat=[r.decode_tokens_per_s for r in results])
    return speeds


__all__ = ["BenchmarkResult", "DecodeSpeed", "EnergyReading", "SweepConfig", "SweepResult", "bench_decoder", "benchmark_executable",
           "choose_batch", "current_rss_bytes", "decoder_signature", "energy_sensor", "measure", "measure_decode",
           "measure_decode_side_by_side", "peak_rss_bytes",
           "percentile", "reset_peak_memory", "sweep", "symbolic_axis"]
