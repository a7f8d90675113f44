"""Order the candidates: feasible first by $/1M tokens; the recommendation, the migration option,
and the Pareto fronts (cost vs accuracy, cost vs latency)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from .candidates import LOWER_IS_BETTER, Candidate
from .feasibility import Reason


@dataclass
class Judged:
    """A candidate with its verdict."""

    candidate: Candidate
    reasons: list[Reason]

    @property
    def feasible(self) -> bool:
        return not self.reasons

    @property
    def miss(self) -> float:
        """How far an infeasible candidate is from feasible: the sum of its relative shortfalls."""
        return sum(r.shortfall for r in self.reasons)


def _cost_key(judged: Judged) -> tuple[float, float]:
    cost = judged.candidate.usd_per_1m
    latency = judged.candidate.latency_for_slo
    return (math.inf if cost is None else cost, math.inf if latency is None else latency)


def rank(judged: Sequence[Judged]) -> list[Judged]:
    """Feasible ones by $/1M (unpriced last, then by latency); then the infeasible ones, closest miss first."""
    feasible = sorted((j for j in judged if j.feasible), key=_cost_key)
    infeasible = sorted((j for j in judged if not j.feasible), key=lambda j: (j.miss, _cost_key(j)))
    return feasible + infeasible


def migration_option(ranked: Sequence[Judged], recommended: Judged | None) -> Judged | None:
    """The cheapest feasible candidate on another backend or another hardware profile than the
    recommendation: where to go if the recommended stack becomes unavailable."""
    if recommended is None:
        return None
    rec = recommended.candidate
    for judged in ranked:
        other = judged.candidate
        if judged.feasible and (other.backend != rec.backend or other.hardware != rec.hardware):
            return judged
    return None


def why(recommended: Judged, ranked: Sequence[Judged], floors: dict[str, float]) -> str:
    """One sentence: what it costs, that it meets each limit, and what the next option costs."""
    c = recommended.candidate
    price = "unpriced" if c.usd_per_1m is None else f"${c.usd_per_1m:.4g} per 1M {c.unit}"
    parts = [f"cheapest feasible candidate: {price}"]
    for metric, limit in floors.items():
        value = c.accuracy.get(metric)
        op = "<=" if metric in LOWER_IS_BETTER else ">="
        parts.append(f"{metric} {value:.6g} {op} {limit:g}")
    latency = c.latency_for_slo
    if latency is not None:
        parts.append(f"{'TPOT' if c.kind == 'decoder' else 'p99'} {latency:.4g} ms")
    others = [j for j in ranked if j.feasible and j is not recommended]
    if others and others[0].candidate.usd_per_1m and c.usd_per_1m:
        ratio = others[0].candidate.usd_per_1m / c.usd_per_1m
        parts.append(f"next feasible ({others[0].candidate.label()}) costs {ratio:.2f}x")
    return "; ".join(parts)


def pareto_front(candidates: Sequence[Candidate], value: Callable[[Candidate], float | None], *,
                 maximize: bool, tolerance: float = 0.0) -> list[Candidate]:
    """Candidates no other candidate beats on both cost (lower) and ``value`` (higher when
    ``maximize``, else lower). Values within ``tolerance`` count as equal (two backends' cosines that
    differ by 1e-8 are the same accuracy). Unpriced or unmeasured candidates are left out. Sorted by cost."""
    points = [(c.usd_per_1m, value(c), c) for c in candidates
              if c.usd_per_1m is not None and value(c) is not None]

    def at_least(a: float, b: float) -> bool:  # a is as good as b
        return a >= b - tolerance if maximize else a <= b + tolerance

    def better(a: float, b: float) -> bool:
        return a > b + tolerance if maximize else a < b - tolerance

    front = []
    for cost, v, c in points:
        dominated = any(oc <= cost and at_least(ov, v) and (oc < cost or better(ov, v)) for oc, ov, _ in points)
        if not dominated:
            front.append((cost, v, c))
    return [c for _, _, c in sorted(front, key=lambda t: (t[0], t[1]))]


def accuracy_value(metric: str) -> Callable[[Candidate], float | None]:
    return lambda c: c.accuracy.get(metric)


__all__ = ["Judged", "accuracy_value", "migration_option", "pareto_front", "rank", "why"]
