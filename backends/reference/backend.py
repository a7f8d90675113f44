"""onnx.reference.ReferenceEvaluator as a backend: slow, hardware-free, the oracle.

It runs any precision the model itself carries (a QDQ model is evaluated op by
op, exactly as written), so it is the reference for quantized artifacts too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from portarun.plugin import (
    Backend, Device, Executable, Model, Precision, Provenance, Support, Target, quantization_of,
)


class ReferenceExecutable(Executable):
    def __init__(self, evaluator, **kwargs: Any):
        super().__init__(**kwargs)
        self.evaluator = evaluator
        self._output_names = [o.name for o in self.model.proto.graph.output]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.evaluator.run(None, feeds)
        return {name: np.asarray(value) if not isinstance(value, (list, dict)) else value
                for name, value in zip(self._output_names, results)}


class ReferenceBackend(Backend):
    name = "reference"
    description = "onnx.reference.ReferenceEvaluator: exact, slow, the parity oracle"
    # the model as written: float32, or the quantization it carries (fp16/bf16 would need another model;
    # `portarun backends` lists only what supports() can accept)
    precisions = (Precision.FP32, Precision.INT8, Precision.INT8_WEIGHT, Precision.INT4_WEIGHT)
    install_hint = "pip install onnx"
    default_device = "cpu"
    device_kinds = ("cpu",)
    options = {"verbose": "ReferenceEvaluator verbosity (0-4)"}

    def sdk_version(self) -> str:
        return onnx.__version__

    def devices(self) -> list[Device]:
        return [Device(self.name, "cpu", None, description="NumPy on the host CPU")]

    def _supports(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Support:
        carried = quantization_of(model)
        if precision.is_quantized and carried != precision.value:
            return Support.no(f"the reference evaluates the model as written; it is "
                              f"{carried or 'float'}, not {precision}")
        if precision is Precision.FP32 and carried is not None:
            return Support.no(f"the model is quantized ({carried}); use -p {carried}")
        foreign = _foreign_ops(model.proto)
        if foreign:  # e.g. com.microsoft contrib ops from ORT's optimizer or quantizer
            return Support.no(f"onnx's reference evaluator has no implementation for {', '.join(foreign)}",
                              missing_ops=tuple(foreign))
        return Support.yes()

    def _compile(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Executable:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model.proto, verbose=int(options.get("verbose", 0)))
        provenance = Provenance(backend=self.name, sdk_version=onnx.__version__, target=str(target),
                                device="host CPU (NumPy)", precision=precision.value,
                                providers=("onnx.reference",))
        return ReferenceExecutable(evaluator, backend=self, model=model, target=target, precision=precision,
                                   provenance=provenance, options=options)


_REFERENCE_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")


def _reference_ml_ops() -> set[str]:
    # onnx's evaluator implements only part of ai.onnx.ml (no ZipMap, CategoryMapper, ...)
    try:
        from onnx.reference.ops.aionnxml import _op_list
    except ImportError:  # pragma: no cover - an onnx without the ml evaluator
        return set()
    return {name for name in dir(_op_list) if name[:1].isupper() and name not in ("Any", "OpFunction", "OpRun")}


def _foreign_ops(proto: onnx.ModelProto) -> list[str]:
    """domain::op of every node onnx's reference evaluator does not implement (subgraphs included)."""
    local = {(f.domain, f.name) for f in proto.functions}
    ml_ops = None
    found: set[str] = set()

    def check(node: onnx.NodeProto) -> None:
        nonlocal ml_ops
        if (node.domain, node.op_type) in local:
            return
        if node.domain not in _REFERENCE_DOMAINS:
            found.add(f"{node.domain}::{node.op_type}")
        elif node.domain == "ai.onnx.ml":
            ml_ops = _reference_ml_ops() if ml_ops is None else ml_ops
            if node.op_type not in ml_ops:
                found.add(f"ai.onnx.ml::{node.op_type}")

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            check(node)
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    visit(sub)

    visit(proto.graph)
    for function in proto.functions:
        for node in function.node:
            check(node)
    return sorted(found)
