"""A candidate deployment and what was measured about it: one row of the plan's table.

A candidate is one (hardware, target, precision, batch) with its accuracy against the
fp32 reference, its latency (median/p99 for encoders, TTFT/TPOT for decoders), its
throughput, memory, energy and price, and where and when it was measured. The planner
only reads these numbers; it never measures or assumes one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

ACCURACY_METRICS = ("cosine", "top1", "exact", "max_abs")
# max_abs is an error (lower is better); the others are agreements (higher is better)
LOWER_IS_BETTER = frozenset({"max_abs"})


@dataclass
class Accuracy:
    """Agreement with the fp32 reference on the eval set; ``exact`` is agreement with the user's labels."""

    cosine: float | None = None
    top1: float | None = None
    max_abs: float | None = None
    exact: float | None = None
    samples: int | None = None

    def get(self, metric: str) -> float | None:
        if metric not in ACCURACY_METRICS:
            raise KeyError(metric)
        return getattr(self, metric)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Source:
    """Where a candidate's numbers come from: measured here by this plan, or imported from a report."""

    kind: str = "measured"  # "measured" or "imported"
    where: str = ""  # host / CPU / device description of the machine that measured it
    when: str = ""  # ISO-8601 time of the measurement
    report: str | None = None  # path of the imported report

    def label(self) -> str:
        if self.kind == "measured":
            return "measured here"
        return f"imported from {self.report or '?'} ({self.where or 'unknown machine'}, {self.when or 'undated'})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """One deployment option and its measurements (None: not measured)."""

    target: str
    precision: str
    batch: int
    model: str = ""
    kind: str = "encoder"  # "encoder" (one pass per request) or "decoder" (prefill + decode loop)
    hardware: str | None = None  # hardware profile name used for price and memory
    accuracy: Accuracy = field(default_factory=Accuracy)
    latency_median_ms: float | None = None
    latency_p99_ms: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None  # median time per output token after the first
    tpot_p99_ms: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    items_per_s: float | None = None
    tokens_per_s: float | None = None
    unit: str = "tokens"  # what usd_per_1m prices: "tokens" or "items" (models without a sequence axis)
    peak_memory_bytes: int | None = None
    energy_j_per_run: float | None = None
    weight_bytes: int | None = None
    kv_cache_bytes: int | None = None  # at this batch and prompt + output length
    device_memory_bytes: int | None = None  # what the device offers (from the profile or this machine)
    usd_per_hour: float | None = None
    usd_per_1m: float | None = None
    cost: dict[str, Any] = field(default_factory=dict)  # basis, inputs and notes of the price
    source: Source = field(default_factory=Source)
    error: str = ""  # why it could not be measured (compile or run failure)
    notes: list[str] = field(default_factory=list)

    @property
    def backend(self) -> str:
        return self.target.split(":", 1)[0]

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.hardware or "", self.target, self.precision, self.batch)

    def label(self) -> str:
        where = f" [{self.hardware}]" if self.hardware else ""
        return f"{self.target} {self.precision} b{self.batch}{where}"

    @property
    def latency_for_slo(self) -> float | None:
        """The latency the Pareto front and the SLO talk about: p99 (encoders), TPOT (decoders)."""
        return self.tpot_ms if self.kind == "decoder" else self.latency_p99_ms

    @property
    def required_memory_bytes(self) -> int | None:
        if self.weight_bytes is None:
            return None
        return self.weight_bytes + (self.kv_cache_bytes or 0)

    def requests_per_s(self) -> float | None:
        """Requests one replica serves per second at this batch (a decoder request = prompt + outputs)."""
        if self.kind == "decoder":
            if self.ttft_ms is None or self.tpot_ms is None or not self.output_tokens:
                return None
            seconds = (self.ttft_ms + (self.output_tokens - 1) * self.tpot_ms) / 1e3
            return self.batch / seconds if seconds > 0 else None
        return self.items_per_s

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["backend"] = self.backend
        data["required_memory_bytes"] = self.required_memory_bytes
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Candidate":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["accuracy"] = Accuracy(**(data.get("accuracy") or {}))
        values["source"] = Source(**(data.get("source") or {}))
        return cls(**values)


__all__ = ["ACCURACY_METRICS", "Accuracy", "Candidate", "LOWER_IS_BETTER", "Source"]
