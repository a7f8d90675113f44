"""Divergence localization: the first node whose output leaves tolerance, found by bisection over
subgraphs extracted with ``onnx.utils.Extractor``.

Prefix ``k`` is the first ``k + 1`` nodes in topological order; its *cut* is the
set of tensors those nodes produce that a later node (or a graph output) reads.
Everything after the prefix depends only on the cut, the graph inputs and the
weights, so "the cut of prefix k diverges" is (almost always) monotone in k and
can be bisected: the first k whose cut diverges names the node that broke
parity, because the cut of prefix k - 1, which holds all of node k's computed
inputs, still matched. Each probe extracts the subgraph that computes the cut and
compiles it on both backends, so each backend keeps its own fusions inside the
subgraph instead of having every tensor turned into an output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import onnx
import onnx.shape_inference
import onnx.utils

import portarun
from portarun import Model, Precision, Tolerance
from portarun.model import quantization_of


@dataclass
class Localization:
    found: bool
    node_name: str = ""
    op_type: str = ""
    node_index: int = -1
    node_count: int = 0
    probes: int = 0
    inputs: list[dict[str, Any]] = field(default_factory=list)  # error of each computed input of the node
    outputs: list[dict[str, Any]] = field(default_factory=list)  # error of each output of the node
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if not self.found:
            return f"not localized: {self.message}"
        worst_in = max((i["max_abs"] for i in self.inputs), default=0.0)
        worst_out = max((o["max_abs"] for o in self.outputs), default=0.0)
        reasons = "; ".join(f"{o['name']}: {o['reason']}" for o in self.outputs if o.get("reason"))
        return (f"first divergent node #{self.node_index} '{self.node_name}' ({self.op_type}): "
                f"inputs max_abs={worst_in:.3g}, outputs max_abs={worst_out:.3g}"
                + (f" [{reasons}]" if reasons else "")
                + f" ({self.probes} subgraphs probed of {self.node_count} nodes)")


class _Prober:
    """Extracts, compiles and compares subgraphs of one model on a target and on the reference."""

    def __init__(self, model: Model, target: str, precision: Precision, feeds: Mapping[str, np.ndarray],
                 reference: str, tolerance: Tolerance, options: Mapping[str, Any] | None):
        self.inferred = onnx.shape_inference.infer_shapes(model.proto)
        self.extractor = onnx.utils.Extractor(self.inferred)
        self.graph = self.inferred.graph
        self.target, self.precision, self.reference = target, precision, reference
        self.reference_precision = Precision.parse(quantization_of(model) or "fp32")
        self.tolerance, self.options = tolerance, dict(options or {})
        self.feeds = dict(feeds)
        initializers = {t.name for t in self.graph.initializer}
        self.input_names = [i.name for i in self.graph.input if i.name not in initializers]
        self.constants = initializers | {o for n in self.graph.node if n.op_type == "Constant" for o in n.output}
        self.typed = set(self.extractor.value_infos)
        self.probes = 0
        self.name = model.name

    def cut(self, k: int) -> list[str]:
        """Computed tensors of nodes 0..k read after k (or graph outputs), that have a known type."""
        produced = [o for n in self.graph.node[:k + 1] for o in n.output if o and o not in self.constants]
        later = {i for n in self.graph.node[k + 1:] for i in _all_inputs(n)} | {o.name for o in self.graph.output}
        return [t for t in produced if t in later and t in self.typed]

    def run(self, outputs: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        self.probes += 1
        sub = self.extractor.extract_model(self.input_names, outputs)
        model = portarun.Model.from_proto(sub, name=f"{self.name}-probe{self.probes}", check=False)
        with portarun.compile(model, self.target, self.precision, **self.options) as exe:
            actual = exe.run(self.feeds)
        with portarun.compile(model, self.reference, self.reference_precision) as ref:
            expected = ref.run(self.feeds)
        return actual, expected

    def diverges(self, k: int) -> bool:
        names = self.cut(k)
        if not names:
            return False
        actual, expected = self.run(names)
        return not portarun.compare(actual, expected, self.tolerance)


def _all_inputs(node: onnx.NodeProto) -> set[str]:
    """Inputs of a node, including those its subgraphs (If/Loop/Scan bodies) read from the outer scope."""
    names = {i for i in node.input if i}
    for attribute in node.attribute:
        graphs = list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else [])
        for graph in graphs:
            for inner in graph.node:
                names |= _all_inputs(inner)
    return names


def localize(model: Model, target: str, precision: Precision | str, feeds: Mapping[str, np.ndarray], *,
             reference: str = "reference:cpu", tolerance: Tolerance | None = None,
             options: Mapping[str, Any] | None = None) -> Localization:
    """Find the first node of ``model`` whose output on ``target`` leaves ``tolerance`` against ``reference``."""
    precision = Precision.parse(precision)
    tolerance = tolerance or Tolerance()
    prober = _Prober(model, target, precision, feeds, reference, tolerance, options)
    nodes = list(prober.graph.node)
    count = len(nodes)
    if count == 0:
        return Localization(False, message="the model has no nodes")
    last = count - 1
    if not prober.diverges(last):
        message = "the target matches the reference on this model within tolerance on these feeds"
        if quantization_of(model) is not None:
            message += (f" (both ran the {quantization_of(model)} model: the error against the float model comes "
                        f"from quantization itself, not from the backend)")
        return Localization(False, node_count=count, probes=prober.probes, message=message)
    low, high = 0, last  # invariant: prefix `high` diverges; every prefix below `low` matches
    while low < high:
        middle = (low + high) // 2
        if prober.diverges(middle):
            high = middle
        else:
            low = middle + 1
    node = nodes[high]
    computed_inputs = [i for i in node.input
                       if i and i not in prober.constants and i in prober.typed and i not in prober.input_names]
    outputs = [o for o in node.output if o and o in prober.typed]
    actual, expected = prober.run(list(dict.fromkeys(computed_inputs + outputs)))
    compared = portarun.compare(actual, expected, tolerance)
    by_name = {o.name: o.to_dict() for o in compared.outputs}
    feeds_used = [{"name": i, "graph_input": True, "max_abs": 0.0} for i in node.input if i in prober.input_names]
    return Localization(True, node_name=node.name or f"#{high}", op_type=node.op_type, node_index=high,
                        node_count=count, probes=prober.probes,
                        inputs=[by_name[i] for i in computed_inputs] + feeds_used,
                        outputs=[by_name[o] for o in outputs])
