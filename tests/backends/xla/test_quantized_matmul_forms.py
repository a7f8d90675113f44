"""Both QMatMul forms (chunked for CPUs, direct for GPUs/TPUs) run here on xla:cpu against the reference
evaluator: int8/int4 (and unsigned) weights, with and without zero points, per channel, per tensor and per
block. The direct form is what GPUs run; forcing it on a CPU is the only way a CPU-only CI checks it."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

import portarun

from . import _models

pytest.importorskip("jax")

K, N = 64, 24
_ONNX_TYPES = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int4": TensorProto.INT4,
               "uint4": TensorProto.UINT4}


def _integers(rng, dtype: str, shape, spread: int | None = None):
    info = ml_dtypes.iinfo(getattr(ml_dtypes, dtype)) if "4" in dtype else np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max) + 1
    if spread is not None:  # zero points near the middle of the range
        middle = (lo + hi) // 2
        lo, hi = middle - spread, middle + spread + 1
    return rng.integers(lo, hi, size=shape)


def _quantized_initializer(name, dtype, values):
    return helper.make_tensor(name, _ONNX_TYPES[dtype], list(values.shape), values.reshape(-1).tolist())


def _dequantize_matmul(dtype: str, granularity: str, zero_point: bool) -> portarun.Model:
    """x[batch, seq, K] @ DequantizeLinear(W [K, N] of ``dtype``); scales per 'channel' (axis 1), per 'tensor',
    or per 'block' of 16 along K; zero points (when asked) are non-zero and of both signs where signed."""
    rng = np.random.default_rng(11)
    shapes = {"channel": (N,), "tensor": (), "block": (K // 16, N)}
    attrs = {"channel": {"axis": 1}, "tensor": {}, "block": {"axis": 0, "block_size": 16}}[granularity]
    scale = (rng.random(shapes[granularity]) * 0.1 + 0.01).astype(np.float32)
    inits = [_quantized_initializer("wq", dtype, _integers(rng, dtype, (K, N))), _models.init("scale", scale)]
    inputs = ["wq", "scale"]
    if zero_point:
        # no zeros: an all-zero zero point would be dropped as symmetric, and every column should need it
        zero = np.asarray(_integers(rng, dtype, shapes[granularity], spread=3))
        inits.append(_quantized_initializer("zp", dtype, np.where(zero == 0, 1, zero)))
        inputs.append("zp")
    nodes = [helper.make_node("DequantizeLinear", inputs, ["w"], **attrs),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    return _models.model(nodes, [_models.tensor("x", TensorProto.FLOAT, ["batch", "seq", K])],
                         [_models.tensor("y", TensorProto.FLOAT, ["batch", "seq", N])], inits,
                         name=f"dq_{dtype}_{granularity}_{'zp' if zero_point else 'sym'}")


def _check_form(form: str, dtype: str, granularity: str, zero_point: bool):
    model = _dequantize_matmul(dtype, granularity, zero_point)
    # a positive mean keeps sum(x) over each block away from 0, so a missing zero-point term shows
    x = (np.random.default_rng(5).standard_normal((2, 3, K)) + 0.5).astype(np.float32)
    precision = "int4-weight" if "4" in dtype else "int8-weight"
    want = portarun.compile(model, "reference:cpu", precision).run({"x": x})["y"]
    exe = portarun.compile(model, "xla:cpu", precision, quantized_matmul=form)
    np.testing.assert_allclose(exe.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)
    details = exe.provenance.details
    assert details["quantized_matmul"] == form and details["rewrites"]["qmatmul"] == 1
    (node,) = [nd for nd in exe.program.graph.nodes if nd.op_type == "QMatMul"]
    assert node.attrs["form"] == form and len(node.inputs) == (4 if zero_point else 3)
    (stored,) = [w for name, w in exe.program.weights.items() if name.startswith("wq")]
    # chunked: [chunks, K (or K/2 bytes of two 4-bit values), columns]; direct: [K, N] as written
    assert stored.ndim == (3 if form == "chunked" else 2)


@pytest.mark.parametrize("form", ["chunked", "direct"])
@pytest.mark.parametrize("dtype", ["int8", "int4"])
@pytest.mark.parametrize("granularity", ["channel", "block"])
@pytest.mark.parametrize("zero_point", [True, False], ids=["zero-point", "symmetric"])
def test_both_quantized_matmul_forms_match_the_reference(form, dtype, granularity, zero_point):
    _check_form(form, dtype, granularity, zero_point)


@pytest.mark.parametrize("form", ["chunked", "direct"])
@pytest.mark.parametrize("dtype,granularity", [("uint8", "channel"), ("uint4", "block"), ("int8", "tensor")])
def test_unsigned_and_per_tensor_weights_with_zero_points_match_in_both_forms(form, dtype, granularity):
    _check_form(form, dtype, granularity, zero_point=True)


def test_auto_picks_the_chunked_form_on_cpus_and_an_unknown_form_is_a_usage_error():
    model = _dequantize_matmul("int8", "channel", zero_point=True)
    exe = portarun.compile(model, "xla:cpu", "int8-weight")
    assert exe.provenance.details["quantized_matmul"] == "chunked"
    with pytest.raises(portarun.UsageError, match="quantized_matmul"):
        portarun.compile(model, "xla:cpu", "int8-weight", quantized_matmul="fast")
