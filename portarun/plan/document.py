"""The plan as a versioned JSON document (``plan.schema.json``), and its validation and writing."""

from __future__ import annotations

import datetime as _dt
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_text
from ..errors import UsageError
from .cascade import CascadeResult
from .planner import Plan
from .ranking import Judged

SCHEMA_ID = "portarun.plan/1"


def _candidate_entry(index: int, judged: Judged, plan: Plan) -> dict[str, Any]:
    c = judged.candidate
    data = c.to_dict()
    for key in ("latency_median_ms", "latency_p99_ms", "usd_per_1m"):
        data.pop(key)
    data.update({
        "id": index,
        "latency_ms": None if c.latency_p99_ms is None and c.latency_median_ms is None
        else {"median": c.latency_median_ms, "p99": c.latency_p99_ms},
        "usd_per_1m_tokens": c.usd_per_1m,
        "feasible": judged.feasible, "reasons": [r.to_dict() for r in judged.reasons],
        "recommended": plan.recommended is judged, "migration": plan.migration is judged,
    })
    return data


def _pick(plan: Plan, judged: Judged | None, why: str) -> dict[str, Any] | None:
    if judged is None:
        return None
    return {"id": plan.ranked.index(judged), "label": judged.candidate.label(), "why": why}


def _ids(plan: Plan, candidates: list[Any]) -> list[int]:
    positions = {id(j.candidate): i for i, j in enumerate(plan.ranked)}
    return [positions[id(c)] for c in candidates]


def build_document(plan: Plan, *, model: str, seconds: float | None = None,
                   cascade: tuple[str, str, CascadeResult] | None = None) -> dict[str, Any]:
    """The plan as plain data; ``cascade`` = (small model, large model, result) when one was measured."""
    migration_why = ""
    if plan.migration is not None:
        m = plan.migration.candidate
        migration_why = (f"cheapest feasible on another backend or hardware ({m.backend}"
                         f"{' on ' + m.hardware if m.hardware else ''})")
    cascade_data = None
    if cascade is not None:
        small, large, result = cascade
        cascade_data = {"small_model": small, "large_model": large, **result.to_dict()}
    return {
        "schema": SCHEMA_ID,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model, "seconds": seconds,
        "constraints": plan.constraints.to_dict(), "requests_per_s": plan.requests_per_s,
        "candidates": [_candidate_entry(i, j, plan) for i, j in enumerate(plan.ranked)],
        "recommended": _pick(plan, plan.recommended, plan.why),
        "migration": _pick(plan, plan.migration, migration_why),
        "pareto": {"accuracy_metric": plan.constraints.primary_metric,
                   "cost_vs_accuracy": _ids(plan, plan.pareto_accuracy),
                   "cost_vs_latency": _ids(plan, plan.pareto_latency)},
        "replicas": plan.replicas.to_dict() if plan.replicas is not None else None,
        "closest_misses": [plan.ranked.index(j) for j in plan.closest_misses()] if plan.recommended is None else [],
        "cascade": cascade_data,
        "notes": list(plan.notes),
    }


def finite(value: Any) -> Any:
    """NaN/inf floats as None (strict JSON has no spelling for them), numpy scalars as Python numbers."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def schema() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("plan.schema.json").read_text())


def validate(document: dict[str, Any]) -> None:
    """Raise UsageError when ``document`` does not follow ``plan.schema.json`` (needs jsonschema)."""
    try:
        import jsonschema
    except ImportError as exc:
        raise UsageError("validating a plan needs jsonschema", hint="pip install 'portarun[dev]'") from exc
    try:
        jsonschema.validate(document, schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "(root)"
        raise UsageError(f"plan does not follow {SCHEMA_ID} at {where}: {exc.message}") from None


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(finite(document), indent=1, allow_nan=False, default=str) + "\n"


def write_json(document: dict[str, Any], path: str | Path) -> Path:
    atomic_write_text(path, to_json(document))
    return Path(path)


__all__ = ["SCHEMA_ID", "build_document", "finite", "schema", "to_json", "validate", "write_json"]
