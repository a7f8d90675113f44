"""The matrix: cases x targets x precisions, each cell in an isolated worker with a timeout.

For each case the reference outputs are computed once (in the worker too: the
reference can hang as well), then every (target, precision) cell compiles,
checks parity and provenance, and measures latency. A crash or a timeout fails
that cell and the worker restarts for the next one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import portarun
from portarun import Precision, Target
from portarun.plugin import first_line
from portarun.registry import resolve_target

from .cases import Case
from .isolation import InProcess, IsolatedWorker
from .tasks import case_task, reference_task
from .tolerances import explain_tolerance

DEFAULT_TIMEOUT_S = 300.0


@dataclass
class CaseResult:
    case: str
    target: str
    precision: str
    status: str  # "pass", "fail", "error", "skip", "crash", "timeout"
    message: str = ""
    reference: str = ""
    tolerance: dict[str, Any] = field(default_factory=dict)
    tolerance_overrides: list[str] = field(default_factory=list)
    comparison: dict[str, Any] | None = None
    summary: str = ""
    benchmark: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    provenance_ok: bool | None = None
    localization: dict[str, Any] | None = None
    weight_bytes: int | None = None
    tokens_axis: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cost: dict[str, Any] | None = None  # filled in by the report from a hardware profile
    node: dict[str, Any] | None = None  # on a Ray fleet: the node that ran the cell (id, host, hardware, SDKs)

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "skip")

    @property
    def failed(self) -> bool:
        return not self.passed

    @property
    def cosine(self) -> float | None:
        if not self.comparison or not self.comparison.get("outputs"):
            return None
        return min(o.get("cosine", 1.0) for o in self.comparison["outputs"])

    @property
    def max_abs(self) -> float | None:
        if not self.comparison or not self.comparison.get("outputs"):
            return None
        return max(o.get("max_abs", 0.0) for o in self.comparison["outputs"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MatrixResult:
    results: list[CaseResult]
    seconds: float = 0.0
    worker_restarts: int = 0
    node_suite: dict[str, Any] | None = None
    fleet: dict[str, Any] | None = None  # on a Ray fleet: the nodes probed and each target's placement

    @property
    def passed(self) -> bool:
        # the node suite is a census (no backend passes every case), not a gate; its counts are
        # compared against a baseline instead
        return all(r.passed for r in self.results)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts


# Device kinds that only pick another device at run time (OpenVINO AUTO): testing them repeats a
# concrete device's cells, so the default matrix leaves them out; name them with -t to include them.
SELECTOR_DEVICES = ("auto", "multi", "hetero")


def default_targets() -> list[Target]:
    """Every available target except the reference (it is the oracle, not a candidate) and device selectors."""
    return [t for t in portarun.available_targets()
            if t.backend != "reference" and (t.device or "") not in SELECTOR_DEVICES]


def precisions_for(target: Target | str) -> list[Precision]:
    """Every precision the target's backend declares (unsupported ones become skips, with the reason)."""
    try:
        return list(portarun.get_backend(resolve_target(target).backend).precisions)
    except portarun.PortarunError:
        return [Precision.FP32]


def run_matrix(cases: Iterable[Case], targets: Iterable[Target | str],
               precisions: Sequence[Precision | str] | None = None, *, runs: int = 20, warmup: int = 3,
               budget_s: float = 5.0, timeout_s: float = DEFAULT_TIMEOUT_S, isolate: bool = True,
               plugins: Sequence[str] = (), localize_failures: bool = True,
               progress: Callable[[CaseResult, int, int], None] | None = None) -> MatrixResult:
    """Run every case on every target at every precision (``None``: each backend's own list)."""
    start = time.perf_counter()
    cases, targets = list(cases), [str(t) for t in targets]
    plan = [(case, target, Precision.parse(p))
            for case in cases for target in targets
            for p in (precisions if precisions else precisions_for(target))]
    results: list[CaseResult] = []
    runner = IsolatedWorker(plugins) if isolate else InProcess(plugins)
    references: dict[str, Any] = {}
    try:
        for case, target, precision in plan:
            if case.name not in references:
                references[case.name] = runner.call(reference_task, case, timeout_s=timeout_s)
            result = _run_cell(runner, case, target, precision, references[case.name], runs=runs, warmup=warmup,
                               budget_s=budget_s, timeout_s=timeout_s, localize_failures=localize_failures)
            results.append(result)
            if progress:
                progress(result, len(results), len(plan))
    finally:
        runner.close()
    return MatrixResult(results, time.perf_counter() - start, runner.restarts)


def _run_cell(runner: Any, case: Case, target: str, precision: Precision, reference: Any, **kw: Any) -> CaseResult:
    backend = Target.parse(target).backend
    tolerance, why = explain_tolerance(precision, backend=backend, case=case.name)
    result = CaseResult(case.name, target, precision.value, "error", tolerance=tolerance.to_dict(),
                        tolerance_overrides=why, tokens_axis=case.tokens_axis)
    if not reference.ok:
        result.status = "error" if reference.status == "error" else reference.status
        result.message = f"reference failed ({reference.status}): {first_line(reference.message)}"
        return result
    result.reference = reference.value["reference"]
    outcome = runner.call(case_task, case, target, precision.value, reference.value["outputs"], tolerance.to_dict(),
                          reference=result.reference, runs=kw["runs"], warmup=kw["warmup"], budget_s=kw["budget_s"],
                          localize_failures=kw["localize_failures"], timeout_s=kw["timeout_s"])
    result.seconds = outcome.seconds
    if not outcome.ok:
        result.status = outcome.status if outcome.status in ("crash", "timeout") else "error"
        result.message = f"{outcome.status}: {first_line(outcome.message)}"
        return result
    data = outcome.value
    for key in ("status", "message", "comparison", "summary", "benchmark", "provenance", "provenance_ok",
                "localization", "weight_bytes", "notes"):
        if key in data:
            setattr(result, key, data[key])
    return result


