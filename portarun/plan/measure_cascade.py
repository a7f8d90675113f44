"""Measure a small/large classifier pair for the cascade: both models' outputs on the eval set and each
query's latency at batch 1 on one target (portarun.compile), so the cascade arithmetic has real inputs."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from ..api import compile as compile_model
from ..api import load
from ..benchmark import SEQUENCE_AXES, symbolic_axis
from ..cost import weight_bytes
from .candidates import Accuracy, Candidate
from .cascade import CascadeEval
from .evalset import EvalSet, random_eval, sample
from .measure import here
from .measure_encoder import batch_axis

WARMUP = 2


def _per_query(exe: Any, eval_set: EvalSet) -> tuple[np.ndarray, np.ndarray]:
    """The first output on the whole eval set, and each query's own latency at batch 1 (ms)."""
    first = exe.outputs[0].name
    outputs = exe.run(eval_set.feeds)[first]
    for _ in range(WARMUP):
        exe.run(sample(eval_set, 0))
    latencies = []
    for index in range(eval_set.samples):
        feeds = sample(eval_set, index)
        start = time.perf_counter()
        exe.run(feeds)
        latencies.append((time.perf_counter() - start) * 1e3)
    return np.asarray(outputs), np.asarray(latencies)


def _candidate(source: str, target: str, precision: str, model: Any, latency: np.ndarray,
               seq: int | None) -> Candidate:
    median = float(statistics.median(latency))
    items = 1e3 / median if median > 0 else None
    return Candidate(target, precision, 1, model=source, hardware=None, accuracy=Accuracy(),
                     latency_median_ms=median, latency_p99_ms=float(np.percentile(latency, 99)), items_per_s=items,
                     tokens_per_s=items * seq if items and seq else None, unit="tokens" if seq else "items",
                     weight_bytes=weight_bytes(model), source=here(),
                     notes=[f"cascade member: {len(latency)} queries timed one by one at batch 1"])


def measure_pair(small: str, large: str, target: str, *, small_precision: str = "fp32",
                 large_precision: str = "fp32", eval_set: EvalSet | None = None, samples: int = 64, seed: int = 0,
                 dims: dict[str, int] | None = None) -> tuple[CascadeEval, Candidate, Candidate]:
    """Both models on ``target``: outputs, per-query latencies, and a batch-1 candidate each (to be priced)."""
    small_model, large_model = load(small), load(large)
    seq_axis = symbolic_axis(small_model.inputs, SEQUENCE_AXES, None)
    if eval_set is None:
        eval_set = random_eval(small_model.inputs, samples=samples, seed=seed, dims=dims,
                               batch_axis=batch_axis(small_model.inputs))
    seq = None
    if seq_axis:
        seq = int(next(a.shape[1] for a in eval_set.feeds.values() if a.ndim >= 2))
    measured = []
    for source, model, precision in ((small, small_model, small_precision), (large, large_model, large_precision)):
        with compile_model(model, target, precision) as exe:
            outputs, latency = _per_query(exe, eval_set)
        measured.append((outputs, latency, _candidate(source, target, precision, model, latency, seq)))
    (s_out, s_lat, s_cand), (l_out, l_lat, l_cand) = measured
    return CascadeEval(s_out, l_out, s_lat, l_lat, labels=eval_set.labels), s_cand, l_cand


__all__ = ["measure_pair"]
