"""Run cases x targets x precisions: parity against the case's reference, then latency."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

import portarun
from portarun import Comparison, PortarunError, Precision, Target

from .cases import Case
from .tolerances import tolerance_for


@dataclass
class Timing:
    runs: int
    median_ms: float
    p99_ms: float
    min_ms: float

    @classmethod
    def measure(cls, fn: Callable[[], Any], *, warmup: int = 3, runs: int = 20, budget_s: float = 5.0) -> "Timing":
        for _ in range(warmup):
            fn()
        samples = []
        deadline = time.perf_counter() + budget_s
        while len(samples) < runs and (len(samples) < 3 or time.perf_counter() < deadline):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
        samples.sort()
        p99 = samples[min(len(samples) - 1, int(round(0.99 * (len(samples) - 1))))]
        return cls(len(samples), statistics.median(samples), p99, samples[0])


@dataclass
class CaseResult:
    case: str
    target: str
    precision: str
    status: str  # "pass", "fail", "error", "skip"
    comparison: Comparison | None = None
    timing: Timing | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "skip")


@dataclass
class MatrixResult:
    results: list[CaseResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


def run_case(case: Case, target: Target | str, precision: Precision | str, *, runs: int = 20,
             reference_outputs: dict[str, np.ndarray] | None = None) -> CaseResult:
    precision = Precision.parse(precision)
    target = Target.parse(target)
    model = case.load()
    feeds = case.feeds(model)
    try:
        backend = portarun.get_backend(target.backend)
        support = backend.supports(model, target, precision)
        if not support:
            return CaseResult(case.name, str(target), precision.value, "skip", message=support.reason)
        with portarun.compile(model, target, precision) as exe:
            outputs = exe.run(feeds)
            if reference_outputs is None:
                with portarun.compile(model, case.reference, Precision.FP32) as ref:
                    reference_outputs = ref.run(feeds)
            comparison = portarun.compare(outputs, reference_outputs,
                                          tolerance_for(precision, backend=target.backend, case=case.name))
            timing = Timing.measure(lambda: exe.run(feeds), runs=runs)
            return CaseResult(case.name, str(target), precision.value, "pass" if comparison else "fail",
                              comparison=comparison, timing=timing, provenance=exe.provenance.to_dict(),
                              message="" if comparison else comparison.summary())
    except PortarunError as exc:
        return CaseResult(case.name, str(target), precision.value, "error", message=str(exc))


def run_matrix(cases: Iterable[Case], targets: Iterable[Target | str], precisions: Iterable[Precision | str], *,
               runs: int = 20, progress: Callable[[CaseResult], None] | None = None) -> MatrixResult:
    results = []
    for case in cases:
        reference_outputs = None
        for target in targets:
            for precision in precisions:
                if reference_outputs is None:
                    model = case.load()
                    with portarun.compile(model, case.reference, Precision.FP32) as ref:
                        reference_outputs = ref.run(case.feeds(model))
                result = run_case(case, target, precision, runs=runs, reference_outputs=reference_outputs)
                results.append(result)
                if progress:
                    progress(result)
    return MatrixResult(results)
