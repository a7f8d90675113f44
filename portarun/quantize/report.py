"""QuantizedModel: the quantized ONNX model plus the report of how it was made."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..model import Model
from ..types import Precision
from .accuracy import Accuracy

LEVEL_TEXT = {"int4": "int4 weight", "int8": "int8 weight", "int8+act": "int8 weight + activation",
              "float": "float"}


@dataclass
class NodeDecision:
    node: str
    op: str
    weight: str
    level: str  # int4 | int8 | int8+act | float
    reason: str = ""  # why it is not at the requested level (empty when it is)
    block_size: int | None = None  # int4: the block size used (smaller than asked where the dim needs it)


@dataclass
class QuantizationReport:
    precision: str
    floor: str
    floor_met: bool
    calibration: str  # where the calibration samples came from
    calibration_method: str
    validation: str  # held-out samples or the calibration set itself
    evaluator: str  # the target that ran the candidates
    weight_bytes_before: int
    weight_bytes_after: int
    accuracy: Accuracy
    nodes: list[NodeDecision] = field(default_factory=list)
    fallback_steps: list[str] = field(default_factory=list)  # each demotion, in order, with the reason
    opset: int = 0
    block_size: int | None = None
    symmetric: bool = True
    nothing_to_quantize: bool = False  # no weight-carrying node: the model is returned unchanged

    @property
    def weight_ratio(self) -> float:
        return self.weight_bytes_after / self.weight_bytes_before if self.weight_bytes_before else 1.0

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for decision in self.nodes:
            result[decision.level] = result.get(decision.level, 0) + 1
        return result

    def why_not_met(self) -> str:
        """The failed bounds; never empty for a floor that is not met."""
        return "; ".join(self.accuracy.failures) or "no bound failed but the floor is not met (please report this)"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["weight_ratio"] = self.weight_ratio
        return data

    def text(self) -> str:
        counts = ", ".join(f"{n} {LEVEL_TEXT[k]}" for k, n in sorted(self.counts().items()))
        lines = [
            f"quantized to {self.precision} (opset {self.opset}"
            + (f", block size {self.block_size}, {'symmetric' if self.symmetric else 'asymmetric'}"
               if self.block_size else "") + f"): {counts or 'no weight-carrying nodes'}",
            f"weights: {self.weight_bytes_before:,} -> {self.weight_bytes_after:,} bytes "
            f"({self.weight_ratio:.3f}x)",
            f"calibration: {self.calibration} ({self.calibration_method}); validation: {self.validation}; "
            f"evaluated on {self.evaluator}",
            f"accuracy vs float: {self.accuracy.text()}",
            f"floor ({self.floor}): {'met' if self.floor_met else 'NOT met: ' + self.why_not_met()}",
        ]
        if self.nothing_to_quantize:
            lines[-2:] = [f"nothing to quantize: no MatMul, Gemm, Conv or embedding Gather with a constant float "
                          f"weight; the model is unchanged (no floor to judge)"]
        if self.block_size:
            smaller = sorted({d.block_size for d in self.nodes if d.block_size and d.block_size != self.block_size})
            if smaller:
                lines.append(f"int4 block size {'/'.join(map(str, smaller))} where {self.block_size} does not "
                             f"divide the reduction dim (OpenVINO requires it)")
        kept = [d for d in self.nodes if d.reason]
        if kept:
            lines.append("kept at higher precision:")
            lines.extend(f"  {d.node} ({d.op}): {LEVEL_TEXT[d.level]} - {d.reason}" for d in kept)
        return "\n".join(lines)


class QuantizedModel:
    """A quantized ``Model`` (standard ONNX QDQ) and its ``QuantizationReport``."""

    def __init__(self, model: Model, precision: Precision, report: QuantizationReport):
        self.model = model
        self.precision = precision
        self.report = report

    @property
    def proto(self):
        return self.model.proto

    @property
    def floor_met(self) -> bool:
        return self.report.floor_met

    def save(self, path: str | os.PathLike, *, external_data: bool | None = None) -> Path:
        """Write the quantized model atomically (weights beside it when it is large)."""
        return self.model.save(path, external_data=external_data)

    def summary(self) -> str:
        return self.report.text()

    def to_json(self) -> str:
        return json.dumps(self.report.to_dict(), indent=2, default=str)

    def __repr__(self) -> str:
        return (f"QuantizedModel({self.model.name!r}, {self.precision}, weights {self.report.weight_ratio:.3f}x, "
                f"cosine min {self.report.accuracy.cosine_min:.5f}, floor {'met' if self.floor_met else 'NOT met'})")
