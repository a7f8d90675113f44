"""Quantized weights kept int8/int4 on the device: the fused ops the graph rewrite creates and how they store
their weights. (The ONNX quantization ops themselves, QuantizeLinear and friends, are lowered in ops/quant.py.)

- ``fusion``: the graph rewrites DequantizeLinear(W const) -> MatMul / Gather into QMatMul / QGather.
- ``matmul``: QMatMul in its forms, ``direct`` (GPUs, TPUs) and ``chunked`` (CPUs), chosen by ``form_for``
  with ``int8dot`` (``digits``: float activations as 3 int8 digits, one integer dot; the CPU default).
- ``gather``: QGather, the quantized embedding lookup.
- ``packing``: host-side weight layout: 4-bit values two per byte, columns split into cache-sized chunks.
"""
