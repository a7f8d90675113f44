"""Bytes counted as stored: 4-bit weights are half a byte (plus their scales and zero points), so MB per
step, the roofline and MBU are right for every precision."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from portarun import models
from portarun.cost import memory_roofline, weight_bytes
from portarun.model import stored_nbytes
from portarun.models.decoder import config_of, decode_step_bytes
from portarun.quantize.rewrite import Options, build, find_targets, upgrade_opset


def _all_at(model, level: str) -> onnx.ModelProto:
    """Every weight-carrying node at ``level``, no accuracy search (the bytes are what this tests)."""
    base = upgrade_opset(model.proto, 21)
    targets = find_targets(base)
    return build(base, targets, {t.node: level for t in targets}, Options(block_size=32))


def test_sub_byte_tensors_count_half_a_byte():
    int4 = helper.make_tensor("w", TensorProto.INT4, [7, 3], vals=np.zeros(21, np.int8).tobytes()[:11], raw=True)
    assert stored_nbytes(int4) == 11  # 21 nibbles -> 11 bytes, not 21
    assert stored_nbytes(helper.make_tensor("f", TensorProto.FLOAT, [4, 5], np.zeros(20))) == 80


def test_int4_weight_bytes_are_half_a_byte_plus_scales():
    model = models.build("decoder-tiny")
    int4 = _all_at(model, "int4")
    inits = int4.graph.initializer
    nibbles = [math.prod(t.dims) for t in inits if t.data_type == TensorProto.INT4]
    others = sum(onnx.numpy_helper.to_array(t).nbytes for t in inits if t.data_type != TensorProto.INT4)
    assert nibbles and any(t.name.endswith("_int4_scale") for t in inits)  # the scales are counted in others
    assert weight_bytes(int4) == sum((n + 1) // 2 for n in nibbles) + others
    assert weight_bytes(models.Model.from_proto(int4, check=False)) == weight_bytes(int4)

def test_decode_step_bytes_follow_the_precision():
    model = models.build("decoder-tiny")
    config = config_of(model)
    fp32 = decode_step_bytes(model, config, 16)
    wrap = lambda proto: models.Model.from_proto(proto, name=model.name, check=False)  # noqa: E731
    int8 = decode_step_bytes(wrap(_all_at(model, "int8")), config, 16)
    int4 = decode_step_bytes(wrap(_all_at(model, "int4")), config, 16)
    kv = 2 * config["layers"] * config["kv_heads"] * config["head_dim"] * 4 * 16
    # the embedding table is read one row at a time: the step reads far less than the whole model
    assert fp32 < weight_bytes(model) + kv
    # int8 weights are a quarter of fp32 (plus per-channel scales); int4 about half of int8 (block-32 scales)
    assert 0.24 < (int8 - kv) / (fp32 - kv) < 0.30
    assert 0.5 < (int4 - kv) / (int8 - kv) < 0.75
    # an MBU computed from stored bytes: at the roofline's own rate it is exactly 1, never above
    roof = memory_roofline(10e9, int4, achieved_tokens_per_second=10e9 / int4)
    assert roof.fraction == pytest.approx(1.0)
