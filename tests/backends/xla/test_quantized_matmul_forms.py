"""All four QMatMul forms (native, int8dot and chunked for CPUs, direct for GPUs/TPUs) run here on xla:cpu against
the reference evaluator: int8/int4 (and unsigned) weights, with and without zero points, per channel, per tensor
and per block. The direct form is what GPUs run; forcing it on a CPU is the only way a CPU-only CI checks it."""

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


def _dequantize_matmul(dtype: str, granularity: str, zero_point: bool, k: int = K, n: int = N,
                       block: int = 16) -> portarun.Model:
    """x[batch, seq, k] @ DequantizeLinear(W [k, n] of ``dtype``); scales per 'channel' (axis 1), per 'tensor',
    or per 'block' of ``block`` along K (the last one short when it does not divide k); zero points (when
    asked) are non-zero and of both signs where signed."""
    K, N = k, n
    rng = np.random.default_rng(11)
    shapes = {"channel": (N,), "tensor": (), "block": (-(-K // block), N)}
    attrs = {"channel": {"axis": 1}, "tensor": {}, "block": {"axis": 0, "block_size": block}}[granularity]
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


def _check_form(form: str, dtype: str, granularity: str, zero_point: bool, **shape):
    model = _dequantize_matmul(dtype, granularity, zero_point, **shape)
    # a positive mean keeps sum(x) over each block away from 0, so a missing zero-point term shows
    x = (np.random.default_rng(5).standard_normal((2, 3, shape.get("k", K))) + 0.5).astype(np.float32)
    precision = "int4-weight" if "4" in dtype else "int8-weight"
    want = portarun.compile(model, "reference:cpu", precision).run({"x": x})["y"]
    exe = portarun.compile(model, "xla:cpu", precision, quantized_matmul=form)
    np.testing.assert_allclose(exe.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)
    details = exe.provenance.details
    assert details["quantized_matmul"] == form and details["rewrites"]["qmatmul"] == 1
    (node,) = [nd for nd in exe.program.graph.nodes if nd.op_type == "QMatMul"]
    # the integer forms store unsigned weights shifted to signed, with a zero point even where none was written
    unsigned_shifted = form in INTEGER_FORMS and dtype.startswith("u")
    assert node.attrs["form"] == form and len(node.inputs) == (4 if zero_point or unsigned_shifted else 3)
    stored = exe.program.weights[node.inputs[1]]
    # chunked: [chunks, K (or K/2 bytes of two 4-bit values), columns]; int8dot: [blocks, block (or half of
    # it in bytes), N]; native: int8dot's cut into tiles of 64 columns [tiles, blocks, ..., 64]; direct: [K, N]
    assert stored.ndim == {"direct": 2, "native": 4}.get(form, 3)
    if form in INTEGER_FORMS and "4" in dtype:  # half a byte per 4-bit weight (N padded to 64 for native)
        assert stored.dtype.itemsize == 1
        columns = -(-shape.get("n", N) // 64) * 64 if form == "native" else shape.get("n", N)
        assert stored.nbytes <= (shape.get("k", K) + 16) * columns // 2
    return exe


FORMS = ["chunked", "direct", "int8dot", "native"]
INTEGER_FORMS = ["int8dot", "native"]  # both read the signed per-block layout; native in tiles


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", ["int8", "int4"])
@pytest.mark.parametrize("granularity", ["channel", "block"])
@pytest.mark.parametrize("zero_point", [True, False], ids=["zero-point", "symmetric"])
def test_both_quantized_matmul_forms_match_the_reference(form, dtype, granularity, zero_point):
    _check_form(form, dtype, granularity, zero_point)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype,granularity", [("uint8", "channel"), ("uint4", "block"), ("int8", "tensor")])
def test_unsigned_and_per_tensor_weights_with_zero_points_match_in_both_forms(form, dtype, granularity):
    _check_form(form, dtype, granularity, zero_point=True)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int4", "uint4"])
@pytest.mark.parametrize("zero_point", [True, False], ids=["zero-point", "no-zero-point"])
@pytest.mark.parametrize("form", INTEGER_FORMS)
def test_integer_forms_take_a_short_last_block(form, dtype, zero_point):
    """ONNX lets the last block along K be short (K=72, blocks of 16): the integer forms zero-pad it."""
    exe = _check_form(form, dtype, "block", zero_point, k=72)
    (node,) = [nd for nd in exe.program.graph.nodes if nd.op_type == "QMatMul"]
    assert exe.program.weights[node.inputs[1]].shape[1 if form == "native" else 0] == 5


@pytest.mark.parametrize("dtype", ["int4", "uint4"])
@pytest.mark.parametrize("form", INTEGER_FORMS)
def test_integer_forms_pad_an_odd_k_of_4_bit_weights_per_channel(form, dtype):
    _check_form(form, dtype, "channel", zero_point=True, k=63)


@pytest.mark.parametrize("dtype,granularity,block", [("int8", "channel", 0), ("int4", "block", 128)])
@pytest.mark.parametrize("form", INTEGER_FORMS)
def test_integer_forms_are_float_accurate_on_a_real_size_layer(form, dtype, granularity, block):
    """The int8dot digits carry x to ~2^-21 of each row's peak, native's 16-bit ones (4-bit weights) to 2^-31
    of each block's, and native accumulates x itself in float32 for 8-bit weights: on a
    768 x 512 layer with a batch of rows of very different magnitudes both match the float path to 1e-5 of
    the output's scale."""
    model = _dequantize_matmul(dtype, granularity, zero_point=False, k=768, n=512, block=block or 16)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((1, 4, 768)) * np.array([1e-3, 1.0, 30.0, 1e4])[None, :, None]).astype(np.float32)
    precision = "int4-weight" if "4" in dtype else "int8-weight"
    want = portarun.compile(model, "reference:cpu", precision).run({"x": x})["y"]
    got = portarun.compile(model, "xla:cpu", precision, quantized_matmul=form).run({"x": x})["y"]
    for row in range(4):  # each row against its own scale: a small row is not judged by a large one's
        scale = np.max(np.abs(want[0, row]))
        np.testing.assert_allclose(got[0, row] / scale, want[0, row] / scale, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype,granularity", [("int8", "channel"), ("int4", "block")])
@pytest.mark.parametrize("form", INTEGER_FORMS)
def test_integer_forms_propagate_nan_and_inf_in_a_row(form, dtype, granularity):
    model = _dequantize_matmul(dtype, granularity, zero_point=True)
    x = np.random.default_rng(8).standard_normal((1, 3, K)).astype(np.float32)
    x[0, 0, 5] = np.nan
    x[0, 1, 9] = np.inf
    precision = "int4-weight" if "4" in dtype else "int8-weight"
    y = portarun.compile(model, "xla:cpu", precision, quantized_matmul=form).run({"x": x})["y"]
    assert np.isnan(y[0, 0]).all()
    assert not np.isfinite(y[0, 1]).any()
    want = portarun.compile(model, "reference:cpu", precision).run({"x": x[:, 2:]})["y"]
    np.testing.assert_allclose(y[:, 2:], want, rtol=1e-4, atol=1e-4)  # the other rows are untouched


@pytest.mark.parametrize("dtype,granularity", [("int8", "channel"), ("int4", "block")])
@pytest.mark.parametrize("form", INTEGER_FORMS)
def test_integer_forms_take_an_empty_batch(form, dtype, granularity):
    model = _dequantize_matmul(dtype, granularity, zero_point=True)
    precision = "int4-weight" if "4" in dtype else "int8-weight"
    y = portarun.compile(model, "xla:cpu", precision, quantized_matmul=form).run(
        {"x": np.zeros((0, 3, K), np.float32)})["y"]
    assert y.shape == (0, 3, N)


def test_int8dot_unpacks_wide_4_bit_weights_in_tiles(monkeypatch):
    """A 4-bit block is unpacked to int8 a tile of columns at a time (the last tile short)."""
    from portarun_backends.xla.quant import digits

    monkeypatch.setattr(digits, "TILE_ELEMENTS", 16 * 128)  # blocks of 16 rows: tiles of 128 columns
    _check_form("int8dot", "int4", "block", zero_point=True, n=300)


def test_auto_picks_the_native_form_on_cpus_where_it_builds_and_provenance_names_it():
    from portarun_backends.xla.quant.matmul import form_for
    from portarun_backends.xla.quant.native import kernel

    model = _dequantize_matmul("int8", "channel", zero_point=True)
    exe = portarun.compile(model, "xla:cpu", "int8-weight")
    details = exe.provenance.details
    built = kernel()
    assert built.available, built.detail  # this machine has g++ (the project's CI machines do)
    assert details["quantized_matmul"] == form_for("auto", "cpu") == "native"
    assert details["quantized_matmul_activations"] == "float (4-bit weights: 2 int16 digits per block, to 2^-31 of its max)"
    assert details["quantized_matmul_kernel"] == built.detail
    (node,) = [nd for nd in exe.program.graph.nodes if nd.op_type == "QMatMul"]
    assert node.attrs["form"] == "native"
    int8dot = portarun.compile(model, "xla:cpu", "int8-weight", quantized_matmul="int8dot")
    assert int8dot.provenance.details["quantized_matmul_activations"] == "float (3 int8 digits, base 128)"


def test_auto_falls_back_to_int8dot_where_the_kernel_cannot_be_built(monkeypatch):
    """No compiler (or PORTARUN_XLA_NATIVE=0): 'auto' takes int8dot and provenance says why; asking for
    'native' by name is refused with that reason, never silently replaced."""
    from portarun_backends.xla.quant import native
    from portarun_backends.xla.quant.matmul import form_for

    missing = native.Kernel(False, "no C++ compiler (set CXX or install g++)")
    assert form_for("auto", "cpu", missing) == "int8dot"
    with pytest.raises(ValueError, match="no C.. compiler"):
        form_for("native", "cpu", missing)
    with pytest.raises(ValueError, match="CPU kernel"):
        form_for("native", "gpu")
    assert form_for("auto", "gpu") == "direct"
    monkeypatch.setattr(native, "_kernel", missing)
    model = _dequantize_matmul("int4", "block", zero_point=False)
    exe = portarun.compile(model, "xla:cpu", "int4-weight")
    assert exe.provenance.details["quantized_matmul"] == "int8dot"
    assert exe.provenance.details["quantized_matmul_kernel"] == f"unavailable: {missing.detail}"
    with pytest.raises(portarun.UsageError, match="native.*unavailable"):
        portarun.compile(model, "xla:cpu", "int4-weight", quantized_matmul="native")


def test_an_unknown_quantized_matmul_form_is_a_usage_error():
    model = _dequantize_matmul("int8", "channel", zero_point=True)
    with pytest.raises(portarun.UsageError, match="quantized_matmul"):
        portarun.compile(model, "xla:cpu", "int8-weight", quantized_matmul="fast")


def test_int8dot_unpacks_4_bit_blocks_one_at_a_time():
    """The unpacked int8 copies of a 4-bit weight are never all live at once (XLA would otherwise run every
    unpack first and page-fault a whole int8 copy of the weight into its temporaries on every call)."""
    k, n = 1024, 2048  # 8 blocks of 128 rows; the int8 copy of the whole weight is 2 MB
    model = _dequantize_matmul("int4", "block", zero_point=False, k=k, n=n, block=128)
    exe = portarun.compile(model, "xla:cpu", "int4-weight", quantized_matmul="int8dot")
    exe.run({"x": np.ones((1, 1, k), np.float32)})
    (entry,) = exe.program._cache.values()
    assert entry.call.memory_analysis().temp_size_in_bytes < k * n // 2


def test_a_float_program_claims_no_quantized_activations():
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "float_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [w])
    with portarun.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "xla:cpu", "fp32") as exe:
        assert exe.provenance.details["quantized_matmul_activations"] is None
        assert exe.provenance.details["quantized_matmul_kernel"] is None
