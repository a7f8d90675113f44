"""A small deterministic ONNX graph builder for portarun's built-in models.

Same seed and arguments give byte-identical models: weights come from one
seeded generator in a fixed order, node names are sequential, and nothing
time- or host-dependent is written.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..model import Model

# The IR version each opset was released with; older runtimes refuse newer IRs.
IR_FOR_OPSET = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11}


WEIGHT_STREAM = 0x77656967  # "weig": keeps weight draws apart from seeded feeds


class GraphBuilder:
    def __init__(self, name: str, *, seed: int, opset: int = 17):
        self.name = name
        self.opset = opset
        # A stream of its own: with default_rng(seed), `random_feeds(seed=0)` would replay the
        # first weights as the input (the MLP's first feed was exactly a row of fc0.weight).
        self.rng = np.random.default_rng([seed, WEIGHT_STREAM])
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._counter = 0

    def _fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    def input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, name: str, elem_type: int, shape: list) -> str:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C", copy=True), name))
        return name

    def weight(self, name: str, shape: tuple[int, ...], scale: float | None = None) -> str:
        """A float32 weight ~ N(0, scale); default scale is 1/sqrt(fan_in) (fan_in = shape[0])."""
        if scale is None:
            scale = 1.0 / np.sqrt(shape[0])
        return self.const(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def node(self, op_type: str, inputs: list[str], n_outputs: int = 1, *, name: str | None = None,
             outputs: list[str] | None = None, domain: str = "", **attributes) -> str | list[str]:
        node_name = name or self._fresh(op_type)
        outs = outputs or [f"{node_name}_out{i}" if n_outputs > 1 else f"{node_name}_out" for i in range(n_outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name, domain=domain, **attributes))
        return outs[0] if len(outs) == 1 else outs

    def build(self, doc: str = "") -> Model:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="portarun.models", doc_string=doc)
        proto.ir_version = IR_FOR_OPSET.get(self.opset, onnx.IR_VERSION)
        return Model.from_proto(proto, name=self.name)


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
