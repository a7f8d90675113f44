"""One plan from start to end: measure here and/or import reports, price, judge, rank, and the document.

The command line (``portarun plan``) only builds a ``PlanConfig`` and prints the result;
a CI job or a Ray driver calls ``run_plan`` the same way. Hardware profiles come in as a
function (target -> profile) so this module does not depend on where profiles are stored.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..cost import CostAssumptions, HardwareProfile
from ..errors import UsageError
from .candidates import Accuracy, Candidate
from .cascade import CascadeResult, EscalationRule, RULE_METRICS, run_cascade
from .document import build_document
from .evalset import EvalSet
from .feasibility import Constraints
from .imports import import_report
from .measure import MeasureConfig, measure_candidates
from .planner import Plan, make_plan
from .pricing import price

ProfileFor = Callable[[str], "HardwareProfile | None"]


@dataclass
class CascadeConfig:
    small: str
    large: str
    target: str
    rule: str | None = None  # "max_prob<0.7"; None with sweep_metric: sweep its thresholds
    sweep_metric: str | None = None
    small_precision: str = "fp32"
    large_precision: str = "fp32"
    eval_set: EvalSet | None = None
    samples: int = 64
    dims: dict[str, int] = field(default_factory=dict)
    seed: int = 0


@dataclass
class PlanConfig:
    constraints: Constraints
    assumptions: CostAssumptions
    profile_for: ProfileFor = lambda target: None
    measure: MeasureConfig | None = None
    reports: list[str] = field(default_factory=list)
    requests_per_s: float | None = None
    cascade: CascadeConfig | None = None
    model_label: str = ""
    report_models: list[str] = field(default_factory=list)  # keep only these models from ``reports`` ([]: all)


@dataclass
class PlanRun:
    plan: Plan
    document: dict[str, Any]
    seconds: float
    cascade: CascadeResult | None = None


def machine_memory_bytes() -> int | None:
    """This machine's RAM: the memory limit of a CPU target priced without a memory figure."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _price_here(candidates: list[Candidate], config: PlanConfig) -> None:
    memory = machine_memory_bytes()
    for candidate in candidates:
        profile = config.profile_for(candidate.target)
        is_cpu = (candidate.target.split(":") + ["cpu"])[1] == "cpu"
        price(candidate, profile, config.assumptions, device_memory_bytes=memory if is_cpu else None)


def _cascade(config: PlanConfig) -> tuple[list[Candidate], CascadeResult]:
    """Both models measured on the eval set, priced, and the cascade at the rule (or the sweep)."""
    from .measure_cascade import measure_pair

    spec = config.cascade
    data, small, large = measure_pair(spec.small, spec.large, spec.target, small_precision=spec.small_precision,
                                      large_precision=spec.large_precision, eval_set=spec.eval_set,
                                      samples=spec.samples, seed=spec.seed, dims=spec.dims)
    small.model, large.model = f"small: {spec.small}", f"large: {spec.large}"
    _price_here([small, large], config)
    data.small_usd_per_1m, data.large_usd_per_1m = small.usd_per_1m, large.usd_per_1m
    # the cascade is judged on labels (exact) when given, else on agreement with the large model (top1)
    floors = config.constraints.floors
    preferred = ("exact", "top1") if data.labels is not None else ("top1", "exact")
    floor = next((floors[k] for k in preferred if k in floors), None)
    if spec.sweep_metric is not None and spec.sweep_metric not in RULE_METRICS:
        raise UsageError(f"cannot sweep '{spec.sweep_metric}'", hint=f"choose {', '.join(RULE_METRICS)}")
    result = run_cascade(data, rule=EscalationRule.parse(spec.rule) if spec.rule else None,
                         sweep_metric=spec.sweep_metric, floor=floor)
    for member, point in ((small, result.small), (large, result.large)):
        agreement = point.accuracy if data.labels is None else None
        member.accuracy = Accuracy(top1=agreement, exact=point.accuracy if data.labels is not None else None,
                                   samples=len(data.small_outputs))
    return [small, large], result


def run_plan(config: PlanConfig, progress: Callable[[Candidate], None] | None = None) -> PlanRun:
    """Measure (``config.measure``), import (``config.reports``), or measure a cascade; then plan."""
    started = time.perf_counter()
    if config.measure is None and not config.reports and config.cascade is None:
        raise UsageError("nothing to plan: give a MODEL to measure, --from REPORT.json, or --cascade SMALL LARGE")
    candidates: list[Candidate] = []
    cascade = None
    if config.cascade is not None:
        members, cascade = _cascade(config)
        candidates += members
    if config.measure is not None:
        measured = measure_candidates(config.measure, progress)
        _price_here(measured, config)
        candidates += measured
    wanted = {_model_name(m) for m in config.report_models}
    for path in config.reports:
        imported = import_report(path, assumptions=config.assumptions)
        candidates += [c for c in imported if _model_name(c.model) in wanted] if wanted else imported
    plan = make_plan(candidates, config.constraints, requests_per_s=config.requests_per_s)
    seconds = time.perf_counter() - started
    label = config.model_label or (config.measure.model if config.measure else
                                   f"{config.cascade.small} -> {config.cascade.large}" if config.cascade
                                   else ", ".join(config.reports))
    document = build_document(plan, model=label, seconds=seconds, cascade=(
        (config.cascade.small, config.cascade.large, cascade) if cascade is not None else None))
    document["inputs"] = _inputs(config)
    return PlanRun(plan, document, seconds, cascade)


def _model_name(label: str) -> str:
    """'builtin:decoder-small' and 'decoder-small (decode)' (a report's decode-cost rows) name one model."""
    return label.removeprefix("builtin:").removesuffix(" (decode)")


def _inputs(config: PlanConfig) -> dict[str, Any]:
    """What the plan was made from: eval set, cost assumptions, imported reports (shown with the result)."""
    measure, evals = config.measure, None
    if measure is not None:
        evals = (measure.eval_set.source if measure.eval_set is not None
                 else f"random ({measure.eval_samples} samples or prompts, seed {measure.seed + 2})")
    elif config.cascade is not None:
        evals = config.cascade.eval_set.source if config.cascade.eval_set else f"random ({config.cascade.samples})"
    return {"eval": evals, "assumptions": config.assumptions.to_dict(), "reports": list(config.reports),
            "reference": measure.reference if measure is not None else None,
            "quantize_floor": measure.quantize_floor if measure is not None else None}


def succeeded(run: PlanRun) -> bool:
    """A feasible candidate exists (or, for a cascade, a threshold meets the floor)."""
    if run.cascade is not None and run.cascade.chosen is not None:
        return True
    return run.plan.recommended is not None


__all__ = ["CascadeConfig", "PlanConfig", "PlanRun", "machine_memory_bytes", "run_plan", "succeeded"]
