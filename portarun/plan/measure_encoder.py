"""Measure one compiled encoder-style model (one pass per request) over the batch sweep with
``portarun.benchmark.sweep``: latency median/p99, items/s, tokens/s, peak memory, energy per batch."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..benchmark import BATCH_AXES, SweepConfig, symbolic_axis, sweep
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


def measure_encoder(exe: Any, base: Candidate, batches: list[int], *, dims: dict[str, int], runs: int, warmup: int,
                    seed: int = 0) -> list[Candidate]:
    """One candidate per batch size, copied from ``base`` (accuracy, weights, source) with its timings."""
    result = sweep(exe, SweepConfig(batches=list(batches), dims=dict(dims), runs=runs, warmup=warmup, seed=seed))
    return [_candidate(base, row) for row in result.rows]


__all__ = ["batch_axis", "measure_encoder"]
