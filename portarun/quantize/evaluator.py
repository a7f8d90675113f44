"""Runs candidate models during quantization: calibration passes and accuracy checks.

Candidates compile through the registry's backends (``Backend.compile``), so any installed
backend can serve. ``auto`` picks the first available backend that declares itself a fast
exact evaluator (``Backend.exact_evaluation_options``: ONNX Runtime, told to compute int4
weight-only MatMuls exactly instead of quantizing their activations to int8, which would
blur what the artifact itself computes) and the reference evaluator otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ..errors import PortarunError
from ..model import Model, quantization_of
from ..registry import default_registry, get_backend, resolve_target
from ..types import Target


def _exact_options(backend) -> dict[str, Any]:
    return dict(backend.exact_evaluation_options or {})


def resolve_evaluator(evaluator: str) -> tuple[str, dict[str, Any]]:
    """(target, compile options) for an evaluator name: ``auto``, or any target string."""
    if evaluator == "auto":
        for name in default_registry.names():
            try:
                backend = get_backend(name)
                if backend.exact_evaluation_options is None:
                    continue
                if any(device.kind == "cpu" for device in backend.devices()):
                    return f"{name}:cpu", _exact_options(backend)
            except PortarunError:
                continue
        return "reference", {}
    target = Target.parse(evaluator)
    backend = get_backend(target.backend)  # unknown names fail here, with a did-you-mean
    return str(target), _exact_options(backend)


class Evaluator:
    def __init__(self, evaluator: str = "auto"):
        self.target, self.options = resolve_evaluator(evaluator)

    def compile(self, proto: onnx.ModelProto):
        """An executable of ``proto`` (at the precision it carries) to run many times; the caller closes it."""
        model = Model.from_proto(proto, name=proto.graph.name or "candidate", check=False)
        target = resolve_target(self.target)
        return get_backend(target.backend).compile(model, target, quantization_of(model) or "fp32", **self.options)

    def run(self, proto: onnx.ModelProto, samples: list[dict[str, np.ndarray]],
            outputs: list[str] | None = None) -> list[dict[str, np.ndarray]]:
        """Outputs of ``proto`` (at the precision it carries) for every sample."""
        with self.compile(proto) as executable:
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
