"""One float session for the whole accuracy search: quantized weights are fed, not rebuilt.

A weight-only plan changes nothing but the weights' values: a node at int4 computes with
``dequantize(quantize(W))``, exactly what its DequantizeLinear produces in float32. So the
search compiles the float model once, with every candidate weight turned into a graph input
(one input per node, so a table shared by a Gather and a MatMul can differ per node), and a
candidate plan is a set of feeds: the float weight or its dequantized form. Compiling a
decoder-small session per candidate (50 in a ranking pass) was most of the 5 minutes the
search took. The same session also returns each node's float activation input, so layer
sensitivity is measured locally (the layer's own output error on its real inputs) without
running the model once per layer.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .numerics import QuantizedTensor
from .rewrite import Options, Target, quantized_weight

Feeds = dict[str, np.ndarray]
SWAPPABLE_LEVELS = ("int4", "int8", "float")  # int8+act adds activation QDQ nodes: a different graph
LOCAL_OPS = ("MatMul", "Gemm", "Gather")  # ops whose output error is computed here from their input


def _input_name(t: Target) -> str:
    return f"{t.weight}::{t.output}"


class WeightSwapSession:
    """The float model compiled once with the targets' weights as inputs; ``run(levels, samples)``."""

    def __init__(self, base: onnx.ModelProto, targets: list[Target], evaluator, outputs: list[str],
                 opts: Options):
        self.targets, self.opts, self.outputs = targets, opts, list(outputs)
        self.floats: dict[str, np.ndarray] = {}
        self._dequantized: dict[tuple[str, str], np.ndarray] = {}
        proto = onnx.ModelProto()
        proto.CopyFrom(base)
        graph = proto.graph
        inits = {t.name: t for t in graph.initializer}
        by_output = {t.output: t for t in targets}
        self.probes = sorted({p for t in targets if t.op in LOCAL_OPS for p in self._probe_inputs(t)}
                             - {i.name for i in graph.input} - set(inits))
        for node in graph.node:
            t = by_output.get(node.output[0]) if node.output else None
            if t is not None:
                node.input[t.weight_input] = _input_name(t)
                weight = inits[t.weight]
                self.floats[t.weight] = numpy_helper.to_array(weight)
                graph.input.append(helper.make_tensor_value_info(_input_name(t), weight.data_type, list(weight.dims)))
        used = {name for node in graph.node for name in node.input}
        kept = [init for init in graph.initializer if init.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        existing = {o.name for o in graph.output}
        declared = {vi.name: vi.type.tensor_type.elem_type for vi in graph.value_info}
        for t in targets:  # a MatMul's activation has its weight's type; ids are int64 unless declared
            for name in self._probe_inputs(t):
                if name in self.probes and name not in existing:
                    elem = inits[t.weight].data_type if name == t.activation else \
                        declared.get(name, onnx.TensorProto.INT64)
                    graph.output.append(helper.make_tensor_value_info(name, elem, None))
                    existing.add(name)
        del graph.value_info[:]
        self.executable = evaluator.compile(proto)

    @staticmethod
    def _probe_inputs(t: Target) -> list[str]:
        """The tensor a node's local error is measured on: the activation (MatMul/Gemm), the ids (Gather)."""
        if t.op == "Gather":
            return [t.indices] if t.indices else []
        return [t.activation] if t.activation else []

    def close(self) -> None:
        self.executable.close()

    def weight(self, t: Target, level: str) -> np.ndarray:
        """What node ``t`` computes with at ``level``: the float weight, or its dequantized form."""
        if level == "float":
            return self.floats[t.weight]
        form = "int4" if level == "int4" else "int8"
        key = (_input_name(t), form)
        if key not in self._dequantized:
            q: QuantizedTensor = quantized_weight(t, self.floats[t.weight], level, self.opts)
            self._dequantized[key] = q.dequantize()
        return self._dequantized[key]

    def run(self, levels: dict[str, str], samples: list[Feeds], *, probes: bool = False) -> list[Feeds]:
        """Outputs for every sample with each node's weight at its level in ``levels`` (absent: float)."""
        weights = {_input_name(t): self.weight(t, levels.get(t.node, "float")) for t in self.targets}
        names = self.outputs + (self.probes if probes else [])
        results = []
        for sample in samples:
            got = self.executable.run({**sample, **weights}, check=False)
            results.append({name: got[name] for name in names})
        return results

    def local_error(self, t: Target, level: str, probed: list[Feeds]) -> float | None:
        """Relative squared error of node ``t``'s output at ``level`` on its real inputs (``probed``: results
        of ``run(..., probes=True)`` on float weights, with the sample feeds), or None when not computable."""
        if t.op not in LOCAL_OPS:
            return None
        (probe,) = self._probe_inputs(t) or (None,)
        if probe is None:
            return None
        w, wq = self.floats[t.weight], self.weight(t, level)
        err = ref = 0.0
        for result in probed:  # each result carries its sample's feeds too (graph inputs are probes)
            x = result.get(probe)
            if x is None:
                return None
            if t.op == "Gather":
                rows = np.asarray(x, np.int64).ravel() % w.shape[0]
                y, dy = w[rows], wq[rows] - w[rows]
            else:
                x2 = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
                b, db = (w, wq - w) if t.block_axis == 0 else (w.T, (wq - w).T)  # Gemm transB: W is [N, K]
                if x2.shape[1] != b.shape[0]:
                    return None
                y, dy = x2 @ b, x2 @ db
            err += float(np.sum(np.square(dy, dtype=np.float64)))
            ref += float(np.sum(np.square(y, dtype=np.float64)))
        return err / ref if ref > 0 else (0.0 if err == 0 else float("inf"))
