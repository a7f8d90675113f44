"""Which standard QDQ forms OpenVINO's ONNX frontend cannot read, found before it is asked to.

Measured on OpenVINO 2026.4 (tests/backends/openvino/test_qdq_forms.py): blocked int4
``DequantizeLinear`` (opset 21) converts on 2-D and 4-D weights, per-channel and blocked, as
long as the blocked axis is a whole number of blocks. A short last block, which the ONNX spec
allows (e.g. 3 input channels with ``block_size`` 128), fails inside the frontend with
"Conversion is failed for: DequantizeLinear-21". ``portarun.quantize`` avoids that form when it can
(it picks a block size that divides the axis); a model that still carries it is refused with the
node's name instead of an SDK error.
"""

from __future__ import annotations

from portarun.plugin import Model, onnx_domain


def _attr(node, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def short_block_dequantize(model: Model) -> list[str]:
    """Blocked DequantizeLinear nodes whose axis length is not a multiple of their block size."""
    graph = model.proto.graph
    dims = {t.name: list(t.dims) for t in graph.initializer}
    found = []
    for index, node in enumerate(graph.node):
        if node.op_type != "DequantizeLinear" or onnx_domain(node.domain):
            continue
        block = _attr(node, "block_size", 0)
        shape = dims.get(node.input[0]) if node.input else None
        if not block or not shape:
            continue
        axis = _attr(node, "axis", 1) % len(shape)
        if shape[axis] % block:
            found.append(f"{node.name or f'DequantizeLinear_{index}'} ({node.input[0]}: {shape[axis]} along "
                         f"axis {axis}, block_size {block})")
    return found
