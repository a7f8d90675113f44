"""The routing tier: answer with a small model, escalate uncertain queries to a large one.

On an eval set with both models' outputs and per-query latencies, a rule on the small
model's output (``max_prob<0.7``, ``margin<0.2``, ``entropy>1.0``) escalates a fraction p
of the queries. Then

    accuracy  = mean(small's answer where kept, large's answer where escalated == label)
    latency_i = small_i + (large_i if query i escalated)   -> p95 over the queries
    cost      = c_small + p * c_large                      (every query runs the small model)

and a threshold sweep picks the cheapest threshold whose accuracy meets the floor.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..benchmark import percentile
from ..errors import UsageError

# metric -> the direction in which the small model is *unsure* (escalate when beyond the threshold)
RULE_METRICS = {"max_prob": "<", "margin": "<", "entropy": ">"}
_RULE = re.compile(r"^\s*(max_prob|margin|entropy)\s*([<>])\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class EscalationRule:
    metric: str
    op: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> "EscalationRule":
        match = _RULE.match(text or "")
        if not match:
            raise UsageError(f"bad escalation rule '{text}'",
                             hint="write METRIC<VALUE or METRIC>VALUE with METRIC max_prob, margin or entropy, "
                                  "e.g. --escalate 'max_prob<0.7'")
        metric, op, value = match.group(1), match.group(2), float(match.group(3))
        return cls(metric, op, value)

    def escalate(self, scores: np.ndarray) -> np.ndarray:
        return scores < self.threshold if self.op == "<" else scores > self.threshold

    def text(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def probabilities(outputs: Any) -> np.ndarray:
    """[N, classes] probabilities: the outputs as they are when they already are, else their softmax."""
    array = np.asarray(outputs, dtype=np.float64)
    array = array.reshape(array.shape[0], -1)
    if array.min() >= 0 and np.allclose(array.sum(axis=1), 1.0, atol=1e-4):
        return array
    shifted = np.exp(array - array.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def scores(probs: np.ndarray, metric: str) -> np.ndarray:
    """Per-query confidence measure of the small model's probabilities."""
    if metric == "max_prob":
        return probs.max(axis=1)
    if metric == "margin":
        top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.concatenate(
            [np.zeros_like(probs), probs], axis=1)
        return top2[:, 1] - top2[:, 0]
    if metric == "entropy":
        return -np.sum(np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0), axis=1)
    raise UsageError(f"unknown escalation metric '{metric}'", hint=f"choose {', '.join(RULE_METRICS)}")


@dataclass
class CascadePoint:
    rule: str
    threshold: float
    escalation_rate: float
    accuracy: float
    p95_ms: float
    usd_per_1m: float | None
    meets_floor: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CascadeEval:
    """What the cascade arithmetic needs, per query, measured on the eval set."""

    small_outputs: np.ndarray
    large_outputs: np.ndarray
    small_latency_ms: np.ndarray
    large_latency_ms: np.ndarray
    labels: np.ndarray | None = None  # None: the large model's answers are the labels
    small_usd_per_1m: float | None = None
    large_usd_per_1m: float | None = None

    def __post_init__(self) -> None:
        n = len(self.small_outputs)
        sizes = {len(self.large_outputs), len(self.small_latency_ms), len(self.large_latency_ms)}
        if self.labels is not None:
            sizes.add(len(self.labels))
        if sizes != {n} or n == 0:
            raise UsageError(f"cascade eval arrays disagree in length ({n} vs {sorted(sizes)})",
                             hint="every array needs one entry per eval query")

    def truth(self) -> np.ndarray:
        if self.labels is not None:
            return np.asarray(self.labels).reshape(-1).astype(np.int64)
        return np.argmax(probabilities(self.large_outputs), axis=1)


def evaluate(data: CascadeEval, rule: EscalationRule, floor: float | None = None) -> CascadePoint:
    """The cascade at one rule: escalation rate, accuracy, p95 latency, blended cost."""
    small_probs = probabilities(data.small_outputs)
    escalated = rule.escalate(scores(small_probs, rule.metric))
    answers = np.where(escalated, np.argmax(probabilities(data.large_outputs), axis=1), np.argmax(small_probs, axis=1))
    accuracy = float(np.mean(answers == data.truth()))
    latency = np.asarray(data.small_latency_ms, dtype=np.float64) + np.where(
        escalated, np.asarray(data.large_latency_ms, dtype=np.float64), 0.0)
    rate = float(np.mean(escalated))
    cost = None
    if data.small_usd_per_1m is not None and data.large_usd_per_1m is not None:
        cost = data.small_usd_per_1m + rate * data.large_usd_per_1m
    return CascadePoint(rule.text(), rule.threshold, rate, accuracy, float(percentile(list(latency), 95)), cost,
                        None if floor is None else accuracy >= floor)


def alone(data: CascadeEval, which: str) -> CascadePoint:
    """One model answering every query by itself (the baselines the cascade must beat)."""
    outputs, latency, cost = ((data.small_outputs, data.small_latency_ms, data.small_usd_per_1m) if which == "small"
                              else (data.large_outputs, data.large_latency_ms, data.large_usd_per_1m))
    accuracy = float(np.mean(np.argmax(probabilities(outputs), axis=1) == data.truth()))
    return CascadePoint(f"{which} alone", float("nan"), 1.0 if which == "large" else 0.0, accuracy,
                        float(percentile(list(np.asarray(latency, dtype=np.float64)), 95)), cost)


def sweep_thresholds(data: CascadeEval, metric: str) -> list[float]:
    """Every threshold that gives a different escalation set: each distinct score, and one past the end."""
    values = np.unique(scores(probabilities(data.small_outputs), metric))
    span = float(values[-1] - values[0]) or 1.0
    if RULE_METRICS[metric] == "<":
        return [float(v) for v in values] + [float(values[-1] + span * 1e-6 + 1e-12)]
    return [float(values[0] - span * 1e-6 - 1e-12)] + [float(v) for v in values]


@dataclass
class CascadeResult:
    points: list[CascadePoint]
    chosen: CascadePoint | None
    small: CascadePoint
    large: CascadePoint
    floor: float | None
    metric: str  # "exact" (labels) or "top1 vs large"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"points": [p.to_dict() for p in self.points], "chosen": self.chosen and self.chosen.to_dict(),
                "small": self.small.to_dict(), "large": self.large.to_dict(), "floor": self.floor,
                "metric": self.metric, "notes": self.notes}


def choose(points: Sequence[CascadePoint], floor: float | None) -> CascadePoint | None:
    """The cheapest point meeting the floor (ties: higher accuracy, then lower p95); without a
    floor the most accurate one; None when no point meets the floor."""
    pool = [p for p in points if floor is None or p.accuracy >= floor]
    if not pool:
        return None
    if floor is None:
        return max(pool, key=lambda p: (p.accuracy, -(p.usd_per_1m or 0.0)))
    return min(pool, key=lambda p: (p.usd_per_1m if p.usd_per_1m is not None else p.escalation_rate,
                                    -p.accuracy, p.p95_ms))


def run_cascade(data: CascadeEval, *, rule: EscalationRule | None = None, sweep_metric: str | None = None,
                floor: float | None = None) -> CascadeResult:
    """One rule, or a sweep over every threshold of ``sweep_metric``; the cheapest meeting ``floor``."""
    if (rule is None) == (sweep_metric is None):
        raise UsageError("give either an escalation rule or a metric to sweep", hint="--escalate or --escalate-sweep")
    rules = [rule] if rule is not None else [EscalationRule(sweep_metric, RULE_METRICS[sweep_metric], t)
                                             for t in sweep_thresholds(data, sweep_metric)]
    points = [evaluate(data, r, floor) for r in rules]
    notes = []
    if data.small_usd_per_1m is None or data.large_usd_per_1m is None:
        notes.append("a model is unpriced: the threshold is chosen by escalation rate instead of cost")
    return CascadeResult(points, choose(points, floor), alone(data, "small"), alone(data, "large"), floor,
                         "exact" if data.labels is not None else "top1 vs large", notes)


__all__ = ["CascadeEval", "CascadePoint", "CascadeResult", "EscalationRule", "RULE_METRICS", "alone", "choose",
           "evaluate", "probabilities", "run_cascade", "scores", "sweep_thresholds"]
