"""The JSON report: a versioned document with every number's unit, the environment, the hardware and
cost inputs, and each cell's parity, performance, provenance and localization.

``data/report.schema.json`` is its JSON Schema; ``SCHEMA_ID`` changes when a
field's meaning changes (a reader must refuse a version it does not know).
"""

from __future__ import annotations

import datetime as _dt
import json
from importlib import resources
from pathlib import Path
from typing import Any

import portarun
from portarun import UsageError
from portarun.plugin import atomic_write_text
from portarun.plugin import environment
from portarun.cost import CostAssumptions, cost_per_million, hourly_cost, memory_roofline
from portarun.plugin import last_level_cache_bytes

from .harness import CaseResult, MatrixResult
from .hardware import profile_for

SCHEMA_ID = "portarun.conformance-report/1"


def q(value: float | int | None, unit: str) -> dict[str, Any]:
    """A quantity: a number and its unit."""
    return {"value": value, "unit": unit}


def attach_costs(matrix: MatrixResult, hardware: str | None, assumptions: CostAssumptions) -> None:
    """Price each measured cell: $/1M tokens (items for models without a sequence axis), and roofline."""
    for result in matrix.results:
        bench = result.benchmark
        if not bench:
            continue
        profile = profile_for(hardware, result.target)
        tokens = bench.get("tokens_per_second")
        per_second, unit = (tokens, "tokens") if tokens else (bench["items_per_second"], "items")
        per_pass = bench.get("tokens_per_run") or bench.get("items_per_run") or 1
        hourly = hourly_cost(profile, assumptions)
        priced = cost_per_million(per_second, hourly, unit)
        roof = None
        if profile is not None and profile.bandwidth_tbs.value and result.weight_bytes:
            # on this machine's CPU, weights that fit in its last-level cache are not bound by DRAM bandwidth
            cache = last_level_cache_bytes() if profile.name == "local" else None
            roof = memory_roofline(profile.bandwidth_tbs.value * 1e12, result.weight_bytes,
                                   tokens_per_pass=per_pass, achieved_tokens_per_second=per_second,
                                   cache_bytes=cache).to_dict()
        result.cost = {"profile": profile.to_dict() if profile else None, "unit": unit,
                       "per_million": priced.to_dict(), "roofline": roof}


def _performance(bench: dict[str, Any] | None) -> dict[str, Any] | None:
    if not bench:
        return None
    energy = bench.get("energy") or {}
    return {
        "runs": bench["runs"], "warmup": bench["warmup"],
        "median_latency": q(bench["median_ms"], "ms"), "p99_latency": q(bench["p99_ms"], "ms"),
        "mean_latency": q(bench["mean_ms"], "ms"), "min_latency": q(bench["min_ms"], "ms"),
        "items_per_run": bench["items_per_run"], "tokens_per_run": bench.get("tokens_per_run"),
        "throughput": q(bench["items_per_second"], "items/s"),
        "tokens_per_second": q(bench.get("tokens_per_second"), "tokens/s"),
        "peak_memory": q(bench["peak_memory_bytes"], "bytes"), "peak_memory_source": bench["peak_memory_source"],
        "energy_per_run": q(energy.get("joules_per_run"), "J"), "energy_sensor": energy.get("sensor", "none"),
        "energy_note": energy.get("note", ""),
    }


def _cost(cost: dict[str, Any] | None) -> dict[str, Any] | None:
    if not cost:
        return None
    priced, roof = cost["per_million"], cost.get("roofline")
    unit = cost["unit"]
    hourly = priced["hourly"]
    return {
        "profile": cost["profile"]["name"] if cost["profile"] else None,
        # the whole profile (sourced values), so `portarun plan --from` can re-price and check memory
        "hardware_profile": cost["profile"],
        "unit": unit,
        "usd_per_million": q(priced["usd_per_million"], f"USD/1M {unit}"),
        "energy_usd_per_million": q(priced["energy_usd_per_million"], f"USD/1M {unit}"),
        "capital_usd_per_million": q(priced["capital_usd_per_million"], f"USD/1M {unit}"),
        "throughput": q(priced["per_second"], f"{unit}/s"),
        "usd_per_hour": q(hourly["usd_per_hour"], "USD/h"), "basis": hourly["basis"], "note": hourly["note"],
        "inputs": hourly["inputs"],
        "roofline": None if roof is None else {
            "tokens_per_second": q(roof["tokens_per_second"], f"{unit}/s"),
            "bandwidth": q(roof["bandwidth_bytes_per_s"], "bytes/s"),
            "bytes_per_pass": q(roof["bytes_per_pass"], "bytes"), "tokens_per_pass": roof["tokens_per_pass"],
            "achieved_fraction": q(roof["fraction"], "1"),
            "note": roof.get("note") or "memory roofline at the profile's bandwidth; the fraction is the model "
                                        "bandwidth utilization (never above 1)",
        },
    }


def _metrics(result: CaseResult) -> dict[str, Any] | None:
    if not result.comparison:
        return None
    outputs = result.comparison.get("outputs", [])
    top1 = [o["top1"] for o in outputs if o.get("top1") is not None]
    return {
        "max_abs": q(result.max_abs, "1"), "max_rel": q(max((o["max_rel"] for o in outputs), default=0.0), "1"),
        "nmse": q(max((o["nmse"] for o in outputs), default=0.0), "1"), "cosine": q(result.cosine, "1"),
        "within": q(min((o["within"] for o in outputs), default=1.0), "fraction"),
        "top1_agreement": q(min(top1) if top1 else None, "fraction"),
        "outputs": outputs,
    }


def result_entry(result: CaseResult) -> dict[str, Any]:
    return {
        "case": result.case, "target": result.target, "precision": result.precision, "status": result.status,
        "passed": result.passed, "message": result.message, "reference": result.reference,
        "tolerance": result.tolerance, "tolerance_overrides": result.tolerance_overrides,
        "metrics": _metrics(result), "performance": _performance(result.benchmark), "cost": _cost(result.cost),
        "provenance": result.provenance or None, "provenance_ok": result.provenance_ok,
        "localization": result.localization, "weight_bytes": q(result.weight_bytes, "bytes"),
        "notes": result.notes, "wall_time": q(result.seconds, "s"),
        "node": result.node,
    }


def build_report(matrix: MatrixResult, *, hardware: str | None, assumptions: CostAssumptions,
                 baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    backends = []
    for info in portarun.list_backends():
        backends.append({"name": info.name, "available": info.available, "version": info.version,
                         "reason": info.reason})
    return {
        "schema": SCHEMA_ID,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": {**environment(), "backends": backends},
        "hardware": {"requested": hardware, "assumptions": assumptions.to_dict()},
        "summary": {"passed": matrix.passed and not (baseline or {}).get("regressions"), "counts": matrix.counts(),
                    "cells": len(matrix.results), "wall_time": q(matrix.seconds, "s"),
                    "worker_restarts": matrix.worker_restarts},
        "results": [result_entry(r) for r in matrix.results],
        "node_suite": matrix.node_suite,
        "baseline": baseline,
        "fleet": matrix.fleet,
    }


def schema() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("data/report.schema.json").read_text())


def validate(document: dict[str, Any]) -> None:
    """Raise UsageError when ``document`` does not follow the report schema (needs jsonschema)."""
    try:
        import jsonschema
    except ImportError as exc:
        raise UsageError("validating a report needs jsonschema", hint="pip install 'portarun[dev]'") from exc
    try:
        jsonschema.validate(document, schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "(root)"
        raise UsageError(f"report does not follow {SCHEMA_ID} at {where}: {exc.message}") from None


def finite(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by None: strict JSON has no spelling for them."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(document: dict[str, Any], path: str | Path) -> Path:
    text = json.dumps(finite(json.loads(json.dumps(document, default=_jsonable))), indent=1, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return Path(path)


def load_report(path: str | Path) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read report '{path}': {exc}") from None
    if document.get("schema") != SCHEMA_ID:
        raise UsageError(f"'{path}' is a {document.get('schema')!r} report; this portarun reads {SCHEMA_ID}",
                         hint="regenerate the baseline with this version")
    return document


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
