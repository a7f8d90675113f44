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
4. ``MatMul(A, Transpose(B))`` where the Transpose swaps the last two axes (attention's
   Q @ K^T) contracts over B's last axis directly: XLA on CPU wrote the transposed K out
   before the dot (a copy of the whole cache per layer per decode step).
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
    counts["transposed_operand"] = fold_transposed_operands(graph)
    if transpose:
        transposed: dict[str, str] = {}
        for node in graph.nodes:
            if node.op_type == "MatMul" and len(node.inputs) == 2:
                name = node.inputs[1]
                already = bool(node.attr("_b_transposed"))  # B read through a folded Transpose: [N, K]
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
                node.attrs.pop("_b_transposed", None)
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


def fold_transposed_operands(graph: Graph) -> int:
    """MatMul nodes whose B is a Transpose of the last two axes read the Transpose's input instead, marked
    ``_b_transposed``. The Transpose stays for any other reader (a subgraph may capture it by name);
    where none is left, XLA drops it as dead code. Returns how many MatMuls were changed."""
    producers = {out: node for node in graph.nodes for out in node.outputs}
    folded = 0
    for node in graph.nodes:
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 2 \
                or node.attrs.get("_weight_nk"):
            continue
        source = producers.get(node.inputs[1])
        if source is None or source.op_type != "Transpose" or source.domain not in ("", "ai.onnx") \
                or not source.inputs or not _swaps_last_two(source.attr("perm")):
            continue
        node.inputs[1] = source.inputs[0]
        node.attrs["_b_transposed"] = True
        folded += 1
    return folded


def _swaps_last_two(perm) -> bool:
    """perm is (0, 1, ..., r-3, r-1, r-2) with r >= 2 (an absent perm reverses every axis: only rank 2)."""
    if perm is None:
        return False
    perm = [int(p) for p in perm]
    rank = len(perm)
    return rank >= 2 and perm == list(range(rank - 2)) + [rank - 1, rank - 2]


__all__ = ["Node", "fold_transposed_operands", "rewrite"]
