"""The planner: judge every candidate, rank them, recommend one, and say what the fleet would cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .candidates import Candidate
from .feasibility import Constraints, reasons
from .ranking import Judged, accuracy_value, migration_option, pareto_front, rank, why
from .replicas import Replicas, replicas_for


# accuracies closer than this are the same accuracy on the Pareto front (backends differ by ~1e-8)
ACCURACY_TOLERANCE = 1e-6


@dataclass
class Plan:
    constraints: Constraints
    ranked: list[Judged]
    recommended: Judged | None
    migration: Judged | None
    why: str
    pareto_accuracy: list[Candidate]
    pareto_latency: list[Candidate]
    replicas: Replicas | None = None
    requests_per_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> list[Judged]:
        return [j for j in self.ranked if j.feasible]

    def closest_misses(self, count: int = 3) -> list[Judged]:
        return [j for j in self.ranked if not j.feasible][:count]


def make_plan(candidates: Sequence[Candidate], constraints: Constraints, *,
              requests_per_s: float | None = None) -> Plan:
    """Rank ``candidates`` under ``constraints``; replicas for ``requests_per_s`` at the recommendation."""
    ranked = rank([Judged(c, reasons(c, constraints)) for c in candidates])
    recommended = next((j for j in ranked if j.feasible), None)
    metric = constraints.primary_metric
    measured = [c for c in candidates if not c.error]
    plan = Plan(constraints, ranked, recommended, migration_option(ranked, recommended),
                why(recommended, ranked, constraints.floors) if recommended else "no candidate meets every limit",
                pareto_front(measured, accuracy_value(metric), maximize=metric != "max_abs",
                             tolerance=ACCURACY_TOLERANCE),
                pareto_front(measured, lambda c: c.latency_for_slo, maximize=False),
                requests_per_s=requests_per_s)
    if requests_per_s is not None and recommended is not None:
        plan.replicas = replicas_for(recommended.candidate, requests_per_s)
    if recommended is not None and recommended.candidate.usd_per_1m is None:
        plan.notes.append("the recommendation is unpriced: give --hardware TARGET=PROFILE or --price-per-hour")
    return plan


__all__ = ["Plan", "make_plan"]
