"""Compile-time rewrites of the prepared graph that change how weights are stored.

1. 2-D float weights feeding MatMul (as B) or Gemm are stored [N, K] (transposed
   once, on the host): a dot with the contraction on the weight's minor axis is
   what XLA's GPU GEMMs want; with [K, N] at batch 1 XLA emitted multiply+reduce
   and lost about 30% of decode speed on an H100 (DESIGN section 5).
2. ``DequantizeLinear(W_q, scale[, zero]) -> MatMul`` with a constant quantized W
   becomes one ``QMatMul`` node that keeps W int8/int4 on the device and applies
   the scales after the dot (per output channel) or per block of K (partial dots
   of shape [..., K/block, N], scaled, then summed), the forms XLA fuses into the
   weight read instead of materializing a float copy of W every call (the ``direct``
   form). On CPUs, where XLA does not fuse a convert into a dot, W is stored split
   along N and dequantized one cache-sized chunk at a time inside a scan (the
   ``chunked`` form, ``quant/matmul.py``); the caller picks the form.
3. ``Gather(DequantizeLinear(E_q), ids)`` (quantized embeddings) becomes ``QGather``:
   the rows are gathered as int8/int4, then only they are dequantized.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .lower import Graph, Node

_FLOATS = (np.float32, np.float16, np.float64)


def _is_float(array: np.ndarray) -> bool:
    return array.dtype in _FLOATS or array.dtype.name == "bfloat16"


def rewrite(graph: Graph, weights: dict[str, np.ndarray], constants: dict[str, np.ndarray], *,
            transpose: bool = True, quantized_matmul: str = "direct", pack_int4: bool = False) -> dict[str, int]:
    """Rewrite ``graph`` in place; ``weights``/``constants`` gain and lose entries. Returns counts.

    ``quantized_matmul``: the QMatMul form, 'direct' or 'chunked' (``quant.matmul.form_for``);
    ``pack_int4``: store 4-bit embedding tables two values per byte (CPUs, see ``quant.packing``)."""
    from .quant.fusion import fuse_dequantize_gather, fuse_dequantize_matmul

    counts: Counter = Counter()
    uses = Counter(name for node in graph.nodes for name in node.inputs if name)
    uses.update(graph.outputs)
    counts["qmatmul"] = fuse_dequantize_matmul(graph, weights, constants, uses, form=quantized_matmul)
    counts["qgather"] = fuse_dequantize_gather(graph, weights, constants, uses, pack=pack_int4)
    if transpose:
        transposed: dict[str, str] = {}
        for node in graph.nodes:
            if node.op_type == "MatMul" and len(node.inputs) == 2:
                name = node.inputs[1]
                already = False
            elif node.op_type == "Gemm" and len(node.inputs) >= 2 and not node.attr("transA", 0):
                name = node.inputs[1]
                already = bool(node.attr("transB", 0))
            else:
                continue
            array = weights.get(name)
            if array is None or array.ndim != 2 or not _is_float(array):
                continue
            if already:
                node.attrs["_weight_nk"] = True
                continue
            new_name = transposed.get(name)
            if new_name is None:
                new_name = f"{name}::nk"
                weights[new_name] = np.ascontiguousarray(array.T)
                transposed[name] = new_name
            node.inputs[1] = new_name
            node.attrs["_weight_nk"] = True
            uses[name] -= 1
            counts["transposed"] += 1
        for name in transposed:
            if uses[name] <= 0:
                del weights[name]
    return dict(counts)


__all__ = ["Node", "rewrite"]
