"""Runs candidate models during quantization: calibration passes and accuracy checks.

It goes through the public ``portarun.compile``, so any installed backend can
serve; ``auto`` picks ONNX Runtime on the CPU when it is installed (fast) and
the reference evaluator otherwise. ORT is told to compute int4 weight-only
MatMuls exactly (``session.qdq_matmulnbits_accuracy_level=0``): by default it
quantizes their activations to int8, which would blur what the artifact itself
computes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ..errors import PortarunError
from ..model import Model, quantization_of
from ..types import Target

EXACT_ORT = {"session_config": {"session.qdq_matmulnbits_accuracy_level": "0"}}


def resolve_evaluator(evaluator: str) -> tuple[str, dict[str, Any]]:
    """(target, compile options) for an evaluator name: ``auto``, or any target string."""
    from ..registry import get_backend

    if evaluator == "auto":
        try:
            get_backend("onnxruntime").devices()
            return "onnxruntime:cpu", dict(EXACT_ORT)
        except PortarunError:
            return "reference", {}
    target = Target.parse(evaluator)
    get_backend(target.backend)  # unknown names fail here, with a did-you-mean
    return str(target), dict(EXACT_ORT) if target.backend == "onnxruntime" else {}


class Evaluator:
    def __init__(self, evaluator: str = "auto"):
        self.target, self.options = resolve_evaluator(evaluator)

    def run(self, proto: onnx.ModelProto, samples: list[dict[str, np.ndarray]],
            outputs: list[str] | None = None) -> list[dict[str, np.ndarray]]:
        """Outputs of ``proto`` (at the precision it carries) for every sample."""
        from ..api import compile as compile_model

        model = Model.from_proto(proto, name=proto.graph.name or "candidate", check=False)
        executable = compile_model(model, self.target, quantization_of(model) or "fp32", **self.options)
        with executable:
            results = [executable.run(sample, check=False) for sample in samples]
        if outputs is not None:
            results = [{name: r[name] for name in outputs} for r in results]
        return results


def with_outputs(proto: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of ``proto`` that also outputs ``tensors`` (float intermediate activations)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    existing = {o.name for o in out.graph.output} | {i.name for i in out.graph.input}
    for name in tensors:
        if name not in existing:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            existing.add(name)
    return out
