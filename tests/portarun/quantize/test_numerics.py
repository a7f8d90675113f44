import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from portarun.quantize import dequantize, pack_int4, quantize_blocked_int4, quantize_per_channel_int8, unpack_int4
from portarun.quantize.numerics import activation_params


@pytest.mark.parametrize("count", [0, 1, 2, 7, 33, 1000])
@pytest.mark.parametrize("signed", [True, False])
def test_int4_pack_unpack_round_trip(count, signed):
    rng = np.random.default_rng(count)
    values = rng.integers(-8, 8, count) if signed else rng.integers(0, 16, count)
    packed = pack_int4(values)
    assert len(packed) == (count + 1) // 2
    np.testing.assert_array_equal(unpack_int4(packed, count, signed=signed), values)


def test_int4_packing_matches_onnx_layout():
    # element 0 in the low nibble: [1, 2, -1] -> 0x21, 0x0F; onnx reads it back the same way
    assert pack_int4(np.array([1, 2, -1])) == bytes([0x21, 0x0F])
    tensor = helper.make_tensor("t", TensorProto.INT4, [3], vals=pack_int4(np.array([1, 2, -1])), raw=True)
    np.testing.assert_array_equal(numpy_helper.to_array(tensor).astype(np.int8), [1, 2, -1])


def test_int4_pack_rejects_out_of_range_and_unpack_short_data():
    with pytest.raises(ValueError):
        pack_int4(np.array([16]))
    with pytest.raises(ValueError):
        unpack_int4(b"\x00", 3, signed=True)


def _onnx_dequantize(q, shape):
    """What onnx's reference DequantizeLinear (opset 21) computes for ``q``."""
    elem = (TensorProto.INT4 if q.signed else TensorProto.UINT4) if q.bits == 4 else TensorProto.INT8
    values = (helper.make_tensor("q", elem, list(shape), vals=pack_int4(q.values), raw=True) if q.bits == 4
              else numpy_helper.from_array(q.values, "q"))
    inits = [values, numpy_helper.from_array(q.scale, "s")]
    inputs = ["q", "s"]
    if q.zero_point is not None:
        inits.append(helper.make_tensor("z", elem, list(q.zero_point.shape), vals=pack_int4(q.zero_point), raw=True)
                     if q.bits == 4 else numpy_helper.from_array(q.zero_point, "z"))
        inputs.append("z")
    attrs = {"axis": q.axis, **({"block_size": q.block_size} if q.block_size else {})}
    node = helper.make_node("DequantizeLinear", inputs, ["y"], **attrs)
    graph = helper.make_graph([node], "dq", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return ReferenceEvaluator(model).run(None, {})[0]


@pytest.mark.parametrize("shape,axis,block", [((37, 5), 0, 16), ((37, 5), 0, 32), ((5, 70), 1, 64),
                                              ((3, 4, 3, 3), 1, 16), ((200, 3), 0, 128), ((16, 2), 0, 16)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_blocked_int4_round_trip_and_matches_onnx(shape, axis, block, symmetric):
    w = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    q = quantize_blocked_int4(w, axis, block, symmetric=symmetric)
    n_blocks = -(-shape[axis] // block)
    assert q.scale.shape == tuple(n_blocks if i == axis else d for i, d in enumerate(shape))
    assert (q.zero_point is None) == symmetric
    assert q.values.min() >= (-8 if symmetric else 0) and q.values.max() <= (7 if symmetric else 15)
    ours = dequantize(q)
    # error at most half a step of the block's scale
    step = np.repeat(q.scale, block, axis=axis).take(range(shape[axis]), axis=axis)
    assert np.all(np.abs(ours - w) <= step / 2 + 1e-6)
    np.testing.assert_allclose(_onnx_dequantize(q, shape), ours, rtol=1e-6, atol=1e-7)


def test_asymmetric_int4_keeps_zero_exact_and_uses_zero_points():
    w = np.abs(np.random.default_rng(2).standard_normal((32, 3))).astype(np.float32) + 1.0  # all positive
    w[5, 0] = 0.0
    q = quantize_blocked_int4(w, 0, 16, symmetric=False)
    assert dequantize(q)[5, 0] == 0.0
    assert q.zero_point is not None and q.zero_point.dtype == np.uint8


def test_per_channel_int8_matches_onnx_and_handles_zero_channels():
    w = np.random.default_rng(3).standard_normal((8, 6)).astype(np.float32)
    w[:, 2] = 0.0
    q = quantize_per_channel_int8(w, axis=1)
    assert q.scale.shape == (6,) and q.values.dtype == np.int8 and np.abs(q.values).max() <= 127
    np.testing.assert_allclose(_onnx_dequantize(q, w.shape), dequantize(q), rtol=1e-6)
    assert np.all(dequantize(q)[:, 2] == 0)
    assert np.abs(dequantize(q) - w).max() <= q.scale.max() / 2 + 1e-7


def test_activation_params_include_zero():
    scale, zero = activation_params(2.0, 6.0)  # widened to [0, 6]
    assert zero == 0 and np.isclose(scale, 6.0 / 255)
    scale, zero = activation_params(-1.0, 1.0)
    assert 127 <= zero <= 128
    assert activation_params(0.0, 0.0) == (np.float32(1.0), np.uint8(0))


def test_portable_block_size_divides_the_dim_when_it_can():
    from portarun.quantize.rewrite import portable_block_size

    assert portable_block_size(384, 128) == 128
    assert portable_block_size(64, 128) == 64
    assert portable_block_size(96, 128) == 32
    # no power of two >= 16 divides: a block OpenVINO can still read (it refuses a short last block)
    assert portable_block_size(3, 128, "Conv") == 3  # a first Conv's RGB channels: one block
    # Conv / Gemm (never lowered to MatMulNBits): a divisor OpenVINO can read, power of two or not
    assert portable_block_size(27, 32, "Conv") == 27 and portable_block_size(200, 128, "Gemm") == 100
    # MatMul keeps the power-of-two short last block MatMulNBits takes (OpenVINO refuses it, by name)
    assert portable_block_size(200, 128, "MatMul") == 128
    assert portable_block_size(131, 128, "Conv") == 128  # prime: only the spec's short last block is left
    assert portable_block_size(1536, 32) == 32
