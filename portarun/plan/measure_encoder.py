"""Measure one compiled encoder-style model (one pass per request) over the batch sweep with
``portarun.benchmark`` (``sweep`` on random feeds, ``benchmark_executable`` on the user's eval samples):
latency median/p99, items/s, tokens/s, peak memory, energy per batch."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..benchmark import BATCH_AXES, SEQUENCE_AXES, SweepConfig, benchmark_executable, symbolic_axis, sweep
from .candidates import Candidate


def batch_axis(inputs: Any) -> str:
    """The symbolic batch dim (named like one, else the first symbolic axis), or "batch"."""
    return symbolic_axis(inputs, BATCH_AXES, 0) or "batch"


def _candidate(base: Candidate, row: dict[str, Any]) -> Candidate:
    bench = row["benchmark"]
    energy = bench["energy"]
    note = f"{bench['runs']} timed runs after {bench['warmup']} warm-up"
    if energy["joules_per_run"] is None:
        note += f"; energy: {energy['note']}"
    return replace(base, batch=row["batch"], latency_median_ms=row["median_ms"], latency_p99_ms=row["p99_ms"],
                   items_per_s=bench["items_per_second"], tokens_per_s=bench["tokens_per_second"],
                   unit=row["unit"], peak_memory_bytes=bench["peak_memory_bytes"],
                   energy_j_per_run=energy["joules_per_run"], notes=[*base.notes, note])


def eval_batch(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """The first ``batch`` eval samples (repeated when the set is smaller): real inputs to time with."""
    count = next(iter(feeds.values())).shape[0]
    index = np.arange(batch) % count
    return {name: np.ascontiguousarray(array[index]) for name, array in feeds.items()}


def _eval_rows(exe: Any, feeds: dict[str, np.ndarray], batches: list[int], runs: int,
               warmup: int) -> list[dict[str, Any]]:
    """Rows like ``sweep``'s, timed on the user's eval samples instead of random feeds (random token ids
    or masks can be out of a real model's range)."""
    axis, seq = batch_axis(exe.inputs), symbolic_axis(exe.inputs, SEQUENCE_AXES, None)
    rows = []
    for batch in batches:
        result = benchmark_executable(exe, eval_batch(feeds, batch), warmup=warmup, runs=runs, batch_axis=axis,
                                      tokens_axis=seq)
        rows.append({"batch": batch, "median_ms": result.median_ms, "p99_ms": result.p99_ms,
                     "unit": "tokens" if result.tokens_per_second else "items", "benchmark": result.to_dict()})
    return rows


def measure_encoder(exe: Any, base: Candidate, batches: list[int], *, dims: dict[str, int], runs: int, warmup: int,
                    seed: int = 0, eval_feeds: dict[str, np.ndarray] | None = None) -> list[Candidate]:
    """One candidate per batch size, copied from ``base`` (accuracy, weights, source) with its timings:
    ``portarun.benchmark.sweep`` on random feeds, or the eval samples when the user gave them."""
    if eval_feeds is not None:
        rows = _eval_rows(exe, eval_feeds, list(batches), runs, warmup)
    else:
        rows = sweep(exe, SweepConfig(batches=list(batches), dims=dict(dims), runs=runs, warmup=warmup,
                                      seed=seed)).rows
    return [_candidate(base, row) for row in rows]


__all__ = ["batch_axis", "eval_batch", "measure_encoder"]
