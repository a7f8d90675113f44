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

Static int8 (``int8+act``) adds a QuantizeLinear/DequantizeLinear pair on an activation: a different
graph, but a fixed one once the ranges are calibrated. So every calibrated activation gets its QDQ pair
in the session too, and a per-node boolean input chooses (``Where``) whether the node reads the
fake-quantized activation or the float one: a candidate plan stays a set of feeds. MiniLM's static
search built an ONNX Runtime session per candidate (more than 10 minutes); it now builds one.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import PortarunError
from .numerics import QuantizedTensor
from ..model_checks import used_names
from .rewrite import Options, Target, activation_qdq, copy_without_initializers, quantized_weight

Feeds = dict[str, np.ndarray]
LOCAL_OPS = ("MatMul", "Gemm", "Gather")  # ops whose output error is computed here from their input
# samples per run when they stack along the batch axis: the weights (fed, so not prepacked) are read
# once per run, and 16 decoder-small forwards cost about what one does
STACK = 16


def _input_name(t: Target) -> str:
    return f"{t.weight}::{t.output}"


def _flag_name(t: Target) -> str:
    return f"{t.weight}::{t.output}::act"


class WeightSwapSession:
    """The float model compiled once with the targets' weights as inputs; ``run(levels, samples)``."""

    def __init__(self, base: onnx.ModelProto, targets: list[Target], evaluator, outputs: list[str],
                 opts: Options):
        self.targets, self.opts, self.outputs = targets, opts, list(outputs)
        self.floats: dict[str, np.ndarray] = {}
        self.stack: bool | None = None  # whether samples may run stacked along the batch axis (checked once)
        self._reference: dict[str, float] = {}  # node output -> ||x W||^2 on the probed inputs
        self._dequantized: dict[tuple[str, str], np.ndarray] = {}
        proto = copy_without_initializers(base)  # the initializers it keeps are added below
        graph = proto.graph
        inits = {t.name: t for t in base.graph.initializer}
        by_output = {t.output: t for t in targets}
        # a MatMul's own float output is probed too: its energy, the local error's denominator, is then
        # read instead of recomputed (half the ranking's matrix products)
        self.probes = sorted(({p for t in targets if t.op in LOCAL_OPS for p in self._probe_inputs(t)}
                              | {t.output for t in targets if t.op == "MatMul"})
                             - {i.name for i in graph.input} - set(inits))
        self.flagged: list[Target] = []  # nodes whose activation QDQ a fed flag turns on (int8+act)
        fake_quantized: dict[str, str] = {}  # activation -> its DQ output (one pair per tensor, as build writes)
        nodes: list[onnx.NodeProto] = []
        for node in graph.node:
            t = by_output.get(node.output[0]) if node.output else None
            if t is not None:
                node.input[t.weight_input] = _input_name(t)
                weight = inits[t.weight]
                self.floats[t.weight] = numpy_helper.to_array(weight)
                graph.input.append(helper.make_tensor_value_info(_input_name(t), weight.data_type, list(weight.dims)))
                if t.activation is not None and t.activation in opts.act_ranges:
                    if t.activation not in fake_quantized:
                        dq, qdq, scales = activation_qdq(t.activation, *opts.act_ranges[t.activation])
                        fake_quantized[t.activation] = dq
                        nodes.extend(qdq)
                        graph.initializer.extend(scales)
                    chosen = f"{_flag_name(t)}::chosen"
                    nodes.append(helper.make_node("Where", [_flag_name(t), fake_quantized[t.activation], t.activation],
                                                  [chosen], name=f"{_flag_name(t)}::Where"))
                    graph.input.append(helper.make_tensor_value_info(_flag_name(t), onnx.TensorProto.BOOL, []))
                    node.input[list(node.input).index(t.activation)] = chosen
                    self.flagged.append(t)
            nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)
        used = used_names(graph)  # subgraphs read outer initializers too
        kept = [init for init in list(base.graph.initializer) + list(graph.initializer) if init.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        existing = {o.name for o in graph.output}
        declared = {vi.name: vi.type.tensor_type.elem_type for vi in graph.value_info}
        for t in targets:  # a MatMul's activation and output have its weight's type; ids are int64 unless declared
            for name in self._probe_inputs(t) + ([t.output] if t.op == "MatMul" else []):
                if name in self.probes and name not in existing:
                    elem = inits[t.weight].data_type if name in (t.activation, t.output) else \
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
        weights.update({_flag_name(t): np.array(levels.get(t.node) == "int8+act") for t in self.flagged})
        names = self.outputs + (self.probes if probes else [])
        if self.stack is None:
            self.stack = self._stacking_agrees(weights, samples, names)
        return run_samples(self.executable, samples, names, weights, bool(self.stack))

    def _stacking_agrees(self, weights: Feeds, samples: list[Feeds], names: list[str]) -> bool | None:
        """Whether stacking samples along the first axis changes nothing (checked once, on two samples of
        one shape): a symbolic first dim is usually the batch, but a model may mix rows there (e.g. [seq,
        hidden]). None (ask again next time) while no two samples share a shape."""
        specs = {spec.name: spec for spec in self.executable.inputs}
        if not samples or not all(np.ndim(v) and name in specs and specs[name].shape
                                  and not isinstance(specs[name].shape[0], int) for name, v in samples[0].items()):
            return False  # a fixed first dim (batch 1) cannot take two samples
        pair = next((group[:2] for group in _by_shape(samples).values() if len(group) > 1), None)
        if pair is None:
            return None
        two = [samples[i] for i in pair]
        apart = [{n: got[n] for n in names} for got in
                 (self.executable.run({**sample, **weights}, check=False) for sample in two)]
        try:
            together = _run_stacked(self.executable, two, names, weights)
        except PortarunError:  # e.g. a Reshape with the batch baked in
            return False
        return all(np.allclose(a[n], b[n], rtol=1e-4, atol=1e-5) for a, b in zip(apart, together) for n in names
                   if np.asarray(a[n]).dtype.kind == "f")

    def local_error(self, t: Target, level: str, probed: list[Feeds]) -> float | None:
        """Relative squared error of node ``t``'s output at ``level`` on its real inputs (``probed``: results
        of ``run(..., probes=True)`` on float weights, with the sample feeds), or None when not computable."""
        if t.op not in LOCAL_OPS or level == "int8+act":  # the activation's own rounding is not modelled here
            return None
        (probe,) = self._probe_inputs(t) or (None,)
        if probe is None:
            return None
        xs = [result.get(probe) for result in probed]  # each result carries its sample's feeds too
        if not xs or any(x is None for x in xs):
            return None
        w, wq = self.floats[t.weight], self.weight(t, level)
        if t.op == "Gather":
            rows = np.concatenate([np.asarray(x, np.int64).ravel() for x in xs]) % w.shape[0]
            y, dy = w[rows], wq[rows] - w[rows]
        else:
            b = w if t.block_axis == 0 else w.T  # Gemm transB: W is [N, K]
            x2 = np.concatenate([np.asarray(x, np.float32).reshape(-1, np.shape(x)[-1]) for x in xs])
            if x2.shape[1] != b.shape[0]:
                return None
            dy = x2 @ ((wq - w) if t.block_axis == 0 else (wq - w).T)
            if t.output not in self._reference and t.op == "MatMul" and all(t.output in r for r in probed):
                self._reference[t.output] = float(sum(np.sum(np.square(r[t.output], dtype=np.float64))
                                                      for r in probed))  # what the float session computed
            y = None if t.output in self._reference else x2 @ b
        err = float(np.sum(np.square(dy, dtype=np.float64)))
        if t.output not in self._reference:
            self._reference[t.output] = float(np.sum(np.square(y, dtype=np.float64)))
        ref = self._reference[t.output]
        return err / ref if ref > 0 else (0.0 if err == 0 else float("inf"))


def _by_shape(samples: list[Feeds]) -> dict[tuple, list[int]]:
    """Indices of the samples, grouped by the shapes of their feeds (only equal shapes stack)."""
    groups: dict[tuple, list[int]] = {}
    for index, sample in enumerate(samples):
        groups.setdefault(tuple(sorted((k, np.shape(v)) for k, v in sample.items())), []).append(index)
    return groups


def run_samples(executable, samples: list[Feeds], names: list[str], extra: Feeds | None = None,
                stack: bool = False) -> list[Feeds]:
    """Outputs ``names`` of ``executable`` for every sample (``extra``: feeds every run gets, such as the
    weights). With ``stack``, samples of one shape run ``STACK`` at a time along the batch axis (MiniLM's
    sentences differ in length: those of equal length still share runs)."""
    extra = extra or {}
    results: list[Feeds | None] = [None] * len(samples)
    groups = list(_by_shape(samples).values()) if stack else [[i] for i in range(len(samples))]
    for group in groups:
        for start in range(0, len(group), STACK):
            part = group[start:start + STACK]
            for index, outputs in zip(part, _run_stacked(executable, [samples[i] for i in part], names, extra)):
                results[index] = outputs
    return results  # type: ignore[return-value]


def _run_stacked(executable, chunk: list[Feeds], names: list[str], extra: Feeds) -> list[Feeds]:
    """One run for samples of equal shapes, concatenated along the batch axis and split back after;
    one run per sample when they cannot be (shapes differ, an output is not batch-major)."""
    same = len(chunk) > 1 and all({k: np.shape(v) for k, v in s.items()} ==
                                  {k: np.shape(v) for k, v in chunk[0].items()} for s in chunk)
    if same:
        rows = [int(np.shape(next(iter(s.values())))[0]) for s in chunk]
        feeds = {name: np.concatenate([s[name] for s in chunk]) for name in chunk[0]}
        got = executable.run({**feeds, **extra}, check=False)
        if all(np.ndim(got[n]) and np.shape(got[n])[0] == sum(rows) for n in names):
            cuts = np.cumsum(rows)[:-1]
            parts = {n: np.split(got[n], cuts) for n in names}
            return [{n: parts[n][i] for n in names} for i in range(len(chunk))]
    return [{n: got[n] for n in names} for got in
            (executable.run({**sample, **extra}, check=False) for sample in chunk)]
