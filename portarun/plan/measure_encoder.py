"""Measure one compiled encoder-style model (one pass per request) at one batch size: latency median/p99,
items/s, tokens/s, peak memory, energy (portarun.benchmark)."""

from __future__ import annotations

from typing import Any

from ..benchmark import benchmark_executable
from ..feeds import random_feeds
from .candidates import Candidate

BATCH_NAMES = ("batch", "batch_size", "N", "n")
SEQ_NAMES = ("seq", "sequence", "sequence_length", "seq_len")


def symbolic_axes(inputs: Any) -> tuple[str, str | None]:
    """(batch axis, sequence axis or None): the symbolic dims named like them (batch: else the first axis)."""
    batch = seq = None
    for spec in inputs:
        for position, dim in enumerate(spec.shape or ()):
            if not isinstance(dim, str):
                continue
            if batch is None and (dim in BATCH_NAMES or position == 0):
                batch = dim
            if seq is None and dim in SEQ_NAMES:
                seq = dim
    return batch or "batch", seq


def measure_encoder(exe: Any, candidate: Candidate, *, dims: dict[str, int], runs: int, warmup: int,
                    seed: int = 0) -> Candidate:
    """Fill ``candidate``'s latency, throughput, memory and energy from timed runs at its batch."""
    batch_axis, seq_axis = symbolic_axes(exe.inputs)
    sizes = {**dims, batch_axis: candidate.batch}
    feeds = random_feeds(exe.inputs, seed=seed, dims=sizes)
    result = benchmark_executable(exe, feeds, warmup=warmup, runs=runs, batch_axis=batch_axis,
                                  tokens_axis=seq_axis, dims=sizes,
                                  peak_memory_source="process peak RSS over this candidate's compile and runs")
    candidate.latency_median_ms, candidate.latency_p99_ms = result.median_ms, result.p99_ms
    candidate.items_per_s, candidate.tokens_per_s = result.items_per_second, result.tokens_per_second
    candidate.unit = "tokens" if result.tokens_per_second else "items"
    candidate.peak_memory_bytes = result.peak_memory_bytes
    candidate.energy_j_per_run = result.energy.joules_per_run
    candidate.notes.append(f"{result.runs} timed runs after {result.warmup} warm-up"
                           + ("" if result.energy.joules_per_run is not None else f"; energy: {result.energy.note}"))
    return candidate


__all__ = ["measure_encoder", "symbolic_axes"]
