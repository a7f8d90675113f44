"""Why a candidate cannot be deployed: it misses the accuracy floor, the latency SLO, or does not fit.

Every reason carries the measured value and the limit, so the plan can say "cosine 0.981
< floor 0.999" rather than "infeasible". A number that was not measured is a reason too:
a floor that cannot be checked is not met.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UsageError
from .candidates import ACCURACY_METRICS, LOWER_IS_BETTER, Candidate
from .memory import gib


@dataclass(frozen=True)
class Constraints:
    """The user's floor (per metric) and SLO; None means no limit."""

    floors: dict[str, float] = field(default_factory=dict)  # metric -> minimum (max_abs: maximum)
    p99_ms: float | None = None  # encoders: p99 latency per batch
    ttft_ms: float | None = None  # decoders: time to first token
    tpot_ms: float | None = None  # decoders: median time per output token

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def primary_metric(self) -> str:
        """The accuracy axis of the plot and the Pareto front: the first floor, else cosine."""
        return next(iter(self.floors), "cosine")


def parse_floor(text: str) -> tuple[str, float]:
    """``cosine=0.999`` / ``top1=0.99`` / ``exact=0.98`` / ``max_abs=0.01`` -> (metric, limit)."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in ACCURACY_METRICS:
        raise UsageError(f"bad accuracy floor '{text}'",
                         hint=f"write METRIC=VALUE with METRIC one of {', '.join(ACCURACY_METRICS)}, "
                              "e.g. --floor cosine=0.999")
    try:
        limit = float(value)
    except ValueError:
        raise UsageError(f"accuracy floor '{text}' needs a number after '='") from None
    return name, limit


@dataclass
class Reason:
    """One way a candidate misses: what was compared, the measured value, the limit."""

    kind: str  # "floor", "slo", "memory", "unmeasured", "error"
    metric: str
    value: float | None
    limit: float | None
    text: str

    @property
    def shortfall(self) -> float:
        """How far off, relative to the limit (0 = just met); unmeasured counts as a full miss."""
        if self.value is None or self.limit is None:
            return 1.0
        scale = abs(self.limit) or 1.0
        return abs(self.value - self.limit) / scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _floor_reasons(candidate: Candidate, floors: dict[str, float]) -> list[Reason]:
    reasons = []
    for metric, limit in floors.items():
        value = candidate.accuracy.get(metric)
        if value is None:
            why = "no --labels given" if metric == "exact" else "not measured for this model's outputs"
            reasons.append(Reason("unmeasured", metric, None, limit, f"{metric} not measured ({why})"))
        elif metric in LOWER_IS_BETTER and value > limit:
            reasons.append(Reason("floor", metric, value, limit, f"{metric} {value:.4g} > limit {limit:g}"))
        elif metric not in LOWER_IS_BETTER and value < limit:
            reasons.append(Reason("floor", metric, value, limit, f"{metric} {value:.6g} < floor {limit:g}"))
    return reasons


def _slo_reasons(candidate: Candidate, constraints: Constraints) -> list[Reason]:
    if candidate.kind == "decoder":
        checks = [("ttft_ms", candidate.ttft_ms, constraints.ttft_ms, "TTFT"),
                  ("tpot_ms", candidate.tpot_ms, constraints.tpot_ms, "TPOT")]
        if constraints.p99_ms is not None and constraints.ttft_ms is None and constraints.tpot_ms is None:
            # a decoder planned with an encoder SLO: hold the whole request to it
            total = None
            if candidate.ttft_ms is not None and candidate.tpot_ms is not None and candidate.output_tokens:
                total = candidate.ttft_ms + (candidate.output_tokens - 1) * candidate.tpot_ms
            checks = [("request_ms", total, constraints.p99_ms, "request latency")]
    else:
        checks = [("p99_ms", candidate.latency_p99_ms, constraints.p99_ms, "p99 latency")]
    reasons = []
    for metric, value, limit, name in checks:
        if limit is None:
            continue
        if value is None:
            reasons.append(Reason("unmeasured", metric, None, limit, f"{name} not measured"))
        elif value > limit:
            reasons.append(Reason("slo", metric, value, limit, f"{name} {value:.4g} ms > SLO {limit:g} ms"))
    return reasons


def _memory_reasons(candidate: Candidate) -> list[Reason]:
    need, have = candidate.required_memory_bytes, candidate.device_memory_bytes
    if need is None or have is None or need <= have:
        return []
    kv = f" + KV cache {gib(candidate.kv_cache_bytes)}" if candidate.kv_cache_bytes else ""
    return [Reason("memory", "memory_bytes", float(need), float(have),
                   f"needs {gib(need)} (weights {gib(candidate.weight_bytes)}{kv} at batch {candidate.batch}) "
                   f"> device {gib(have)}")]


def reasons(candidate: Candidate, constraints: Constraints) -> list[Reason]:
    """Every reason ``candidate`` is infeasible under ``constraints`` (empty: feasible)."""
    if candidate.error:
        return [Reason("error", "run", None, None, candidate.error)]
    return _floor_reasons(candidate, constraints.floors) + _slo_reasons(candidate, constraints) \
        + _memory_reasons(candidate)


__all__ = ["Constraints", "Reason", "parse_floor", "reasons"]
