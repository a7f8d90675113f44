"""``portarun plan``: the cheapest deployment (target x precision x batch, on which hardware) that meets
an accuracy floor and a latency SLO, from measured candidates.

    from portarun.plan import Candidate, Constraints, make_plan
    plan = make_plan(candidates, Constraints(floors={"cosine": 0.999}, p99_ms=20))
    plan.recommended.candidate.label()

The planner is pure: it reads measured numbers (``measure`` makes them here, ``imports``
reads them from reports made elsewhere) and never assumes one.
"""

from .candidates import Accuracy, Candidate, Source
from .cascade import CascadeEval, CascadeResult, EscalationRule, run_cascade
from .feasibility import Constraints, Reason, parse_floor, reasons
from .planner import Plan, make_plan
from .pricing import price
from .ranking import Judged, pareto_front, rank
from .replicas import Replicas, replicas_for

__all__ = ["Accuracy", "Candidate", "CascadeEval", "CascadeResult", "Constraints", "EscalationRule", "Judged",
           "Plan", "Reason", "Replicas", "Source", "make_plan", "parse_floor", "pareto_front", "price", "rank",
           "reasons", "replicas_for", "run_cascade"]
