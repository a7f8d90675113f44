"""com.microsoft contrib ops on xla:cpu against onnxruntime's own kernels, on small hand-built graphs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("jax")
pytest.importorskip("onnxruntime")

from ._ort_parity import assert_matches_ort as _assert_matches_ort  # noqa: E402

MS = "com.microsoft"
F = TensorProto.FLOAT


def _rng(seed=0):
    return np.random.default_rng(seed)


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)],
                             ir_version=9)


def _declare_outputs(model, feeds):
    """onnx.checker wants shaped graph outputs; contrib ops have no onnx shape inference: take ORT's."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for vi, value in zip(model.graph.output, session.run(None, feeds)):
        vi.type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(value.dtype)
        vi.type.tensor_type.shape.Clear()
        for dim in value.shape:
            vi.type.tensor_type.shape.dim.add().dim_value = dim
    return model


def assert_matches_ort(model, feeds, **kwargs):
    return _assert_matches_ort(_declare_outputs(model, feeds), feeds, **kwargs)


def _vi(name, elem=F, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


@pytest.mark.parametrize("op_type,with_bias", [("Gelu", False), ("FastGelu", False), ("FastGelu", True),
                                               ("BiasGelu", True), ("QuickGelu", False)])
def test_gelu_family(op_type, with_bias):
    x = _rng().standard_normal((2, 5, 8)).astype(np.float32) * 3
    inits = [("bias", _rng(1).standard_normal(8).astype(np.float32))] if with_bias else []
    node = helper.make_node(op_type, ["x"] + (["bias"] if with_bias else []), ["y"], domain=MS)
    assert_matches_ort(_model([node], [_vi("x", F, [2, 5, 8])], [_vi("y")], inits), {"x": x})


@pytest.mark.parametrize("simplified", [False, True])
def test_skip_layer_normalization_with_all_outputs(simplified):
    rng = _rng(2)
    x, skip = rng.standard_normal((2, 3, 16)).astype(np.float32), rng.standard_normal((2, 3, 16)).astype(np.float32)
    inits = [("gamma", rng.standard_normal(16).astype(np.float32)), ("beta", rng.standard_normal(16).astype(np.float32)),
             ("bias", rng.standard_normal(16).astype(np.float32))]
    if simplified:
        node = helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma", "bias"],
                                ["y", "", "", "sum"], domain=MS, epsilon=1e-6)
        inits = [inits[0], inits[2]]
    else:
        node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"],
                                ["y", "", "", "sum"], domain=MS, epsilon=1e-6)
    model = _model([node], [_vi("x", F, [2, 3, 16]), _vi("skip", F, [2, 3, 16])], [_vi("y"), _vi("sum")], inits)
    assert_matches_ort(model, {"x": x, "skip": skip})


def test_simplified_layer_normalization_in_the_onnx_domain():
    rng = _rng(3)
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "scale"], ["y"], epsilon=1e-6, axis=-1)
    model = _model([node], [_vi("x", F, [2, 3, 16])], [_vi("y")], [("scale", rng.standard_normal(16).astype(np.float32))])
    # onnx.checker knows no SimplifiedLayerNormalization in the ONNX domain: load without it, like such files need
    assert_matches_ort(model, {"x": rng.standard_normal((2, 3, 16)).astype(np.float32)}, check=False)


def test_embed_layer_normalization_with_mask_index():
    rng = _rng(4)
    batch, seq, hidden = 2, 6, 16
    inits = [("word", rng.standard_normal((30, hidden)).astype(np.float32)),
             ("pos", rng.standard_normal((12, hidden)).astype(np.float32)),
             ("seg", rng.standard_normal((2, hidden)).astype(np.float32)),
             ("gamma", rng.standard_normal(hidden).astype(np.float32)),
             ("beta", rng.standard_normal(hidden).astype(np.float32))]
    node = helper.make_node("EmbedLayerNormalization", ["ids", "segments", "word", "pos", "seg", "gamma", "beta", "mask"],
                            ["y", "mask_index", "sum"], domain=MS, epsilon=1e-12)
    model = _model([node], [_vi("ids", TensorProto.INT32, [batch, seq]), _vi("segments", TensorProto.INT32, [batch, seq]),
                            _vi("mask", TensorProto.INT32, [batch, seq])],
                   [_vi("y"), _vi("mask_index", TensorProto.INT32), _vi("sum")], inits)
    mask = np.ones((batch, seq), np.int32)
    mask[1, 4:] = 0
    feeds = {"ids": rng.integers(0, 30, (batch, seq)).astype(np.int32),
             "segments": rng.integers(0, 2, (batch, seq)).astype(np.int32), "mask": mask}
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("trans_a,trans_b,alpha", [(0, 0, 1.0), (1, 0, 0.5), (0, 1, 2.0)])
def test_fused_matmul(trans_a, trans_b, alpha):
    rng = _rng(5)
    a = rng.standard_normal((2, 4, 6) if trans_a else (2, 6, 4)).astype(np.float32)
    b = rng.standard_normal((5, 4) if trans_b else (4, 5)).astype(np.float32)
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain=MS, transA=trans_a, transB=trans_b, alpha=alpha)
    model = _model([node], [_vi("a", F, list(a.shape)), _vi("b", F, list(b.shape))], [_vi("y")])
    assert_matches_ort(model, {"a": a, "b": b})


@pytest.mark.parametrize("weight_type,per_column", [(TensorProto.INT8, False), (TensorProto.UINT8, True)])
def test_dynamic_quantize_matmul_and_matmul_integer_to_float(weight_type, per_column):
    rng = _rng(6)
    a = rng.standard_normal((3, 7, 16)).astype(np.float32)
    dtype = np.int8 if weight_type == TensorProto.INT8 else np.uint8
    b = rng.integers(-100, 100, (16, 8)).astype(dtype) if dtype == np.int8 else rng.integers(0, 255, (16, 8)).astype(dtype)
    scale = (rng.random(8 if per_column else 1) * 0.02 + 0.001).astype(np.float32)
    zero = (np.zeros(8 if per_column else 1) + (0 if dtype == np.int8 else 128)).astype(dtype)
    inits = [("b", b), ("b_scale", scale), ("b_zero", zero), ("bias", rng.standard_normal(8).astype(np.float32))]
    node = helper.make_node("DynamicQuantizeMatMul", ["a", "b", "b_scale", "b_zero", "bias"], ["y"], domain=MS)
    assert_matches_ort(_model([node], [_vi("a", F, [3, 7, 16])], [_vi("y")], inits), {"a": a}, atol=1e-4)
    qa = rng.integers(0, 255, (3, 7, 16)).astype(np.uint8)
    inits += [("a_scale", np.asarray(0.05, np.float32)), ("a_zero", np.asarray(120, np.uint8))]
    node = helper.make_node("MatMulIntegerToFloat", ["qa", "b", "a_scale", "b_scale", "a_zero", "b_zero", "bias"], ["y"],
                            domain=MS)
    assert_matches_ort(_model([node], [_vi("qa", TensorProto.UINT8, [3, 7, 16])], [_vi("y")], inits), {"qa": qa},
                       atol=1e-4)


@pytest.mark.parametrize("bits,zero_kind,k", [(4, None, 64), (4, "packed", 48), (8, "packed", 64), (4, "float", 64)])
def test_matmul_nbits(bits, zero_kind, k):
    rng = _rng(7)
    n, block = 12, 16
    blocks = -(-k // block)
    per_byte = 8 // bits
    values = rng.integers(0, 1 << bits, (n, blocks, block))
    packed = np.zeros((n, blocks, block // per_byte), np.uint8)
    for i in range(per_byte):
        packed |= (values[:, :, i::per_byte] << (i * bits)).astype(np.uint8)
    scales = (rng.random((n * blocks)) * 0.1 + 0.01).astype(np.float32)
    inputs = ["a", "b", "scales"]
    inits = [("b", packed), ("scales", scales)]
    if zero_kind == "packed":
        zeros = rng.integers(0, 1 << bits, (n, blocks))
        zbytes = -(-blocks // per_byte)
        zp = np.zeros((n, zbytes), np.uint8)
        for j in range(blocks):
            zp[:, j // per_byte] |= (zeros[:, j] << ((j % per_byte) * bits)).astype(np.uint8)
        inits.append(("zp", zp.reshape(-1)))
        inputs.append("zp")
    elif zero_kind == "float":
        inits.append(("zp", rng.integers(0, 1 << bits, n * blocks).astype(np.float32)))
        inputs.append("zp")
    if zero_kind is None:
        inputs.append("")
    inputs += ["", "bias"]
    inits.append(("bias", rng.standard_normal(n).astype(np.float32)))
    node = helper.make_node("MatMulNBits", inputs, ["y"], domain=MS, K=k, N=n, bits=bits, block_size=block,
                            accuracy_level=0)
    model = _model([node], [_vi("a", F, [2, 3, k])], [_vi("y")], inits)
    assert_matches_ort(model, {"a": rng.standard_normal((2, 3, k)).astype(np.float32)}, atol=1e-4)


def _mask_input(kind, batch, seq, total):
    if kind == "raw":
        mask = np.ones((batch, total), np.int32)
        mask[1, -2:] = 0
    elif kind == "lengths":
        mask = np.asarray([total, total - 2], np.int32)
    elif kind == "3d":
        mask = np.ones((batch, seq, total), np.int32)
        mask[0, :, 1] = 0
    else:
        return None
    return mask


@pytest.mark.parametrize("mask_kind,unidirectional,with_past", [("raw", 0, False), ("lengths", 0, False),
                                                                 ("3d", 0, False), (None, 1, True),
                                                                 ("raw", 1, False)])
def test_attention(mask_kind, unidirectional, with_past):
    rng = _rng(8)
    batch, seq, hidden, heads, past_len = 2, 5, 16, 4, 3
    total = seq + (past_len if with_past else 0)
    x = rng.standard_normal((batch, seq, hidden)).astype(np.float32)
    inits = [("w", (rng.standard_normal((hidden, 3 * hidden)) * 0.3).astype(np.float32)),
             ("bias", rng.standard_normal(3 * hidden).astype(np.float32))]
    inputs, feeds, vis = ["x", "w", "bias"], {"x": x}, [_vi("x", F, [batch, seq, hidden])]
    mask = _mask_input(mask_kind, batch, seq, total)
    inputs.append("mask" if mask is not None else "")
    if mask is not None:
        feeds["mask"] = mask
        vis.append(_vi("mask", TensorProto.INT32, list(mask.shape)))
    outputs = ["y"]
    if with_past:
        feeds["past"] = rng.standard_normal((2, batch, heads, past_len, hidden // heads)).astype(np.float32)
        vis.append(_vi("past", F, list(feeds["past"].shape)))
        inputs.append("past")
        outputs.append("present")
    node = helper.make_node("Attention", inputs, outputs, domain=MS, num_heads=heads, unidirectional=unidirectional)
    model = _model([node], vis, [_vi(o) for o in outputs], inits)
    assert_matches_ort(model, feeds, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("form", ["separate", "separate-past-causal", "bias-and-attention-bias"])
def test_multi_head_attention(form):
    rng = _rng(9)
    batch, seq, kv_seq, heads, head = 2, 4, 6, 2, 8
    hidden = heads * head
    feeds, vis, inputs, inits = {}, [], [], []
    outputs = ["y"]
    if form == "packed-qkv":
        feeds["q"] = rng.standard_normal((batch, seq, heads, 3, head)).astype(np.float32)
        inputs = ["q"]
    else:
        kv = seq if "past" in form else kv_seq
        feeds["q"] = rng.standard_normal((batch, seq, hidden)).astype(np.float32)
        feeds["k"] = rng.standard_normal((batch, kv, hidden)).astype(np.float32)
        feeds["v"] = rng.standard_normal((batch, kv, hidden)).astype(np.float32)
        inputs = ["q", "k", "v"]
    if form == "bias-and-attention-bias":
        inits.append(("bias", rng.standard_normal(3 * hidden).astype(np.float32)))
        feeds["mask"] = np.ones((batch, kv_seq), np.int32)
        feeds["mask"][0, -1] = 0
        feeds["attn_bias"] = rng.standard_normal((1, heads, seq, kv_seq)).astype(np.float32)
        inputs += ["bias", "mask", "attn_bias"]
    if "past" in form:
        feeds["past_key"] = rng.standard_normal((batch, heads, 3, head)).astype(np.float32)
        feeds["past_value"] = rng.standard_normal((batch, heads, 3, head)).astype(np.float32)
        inputs += ["", "", "", "past_key", "past_value"]
        outputs += ["present_key", "present_value"]
    elem = {"mask": TensorProto.INT32}
    vis = [_vi(name, elem.get(name, F), list(value.shape)) for name, value in feeds.items()]
    node = helper.make_node("MultiHeadAttention", inputs, outputs, domain=MS, num_heads=heads,
                            unidirectional=1 if "causal" in form else 0)
    model = _model([node], vis, [_vi(o) for o in outputs], inits)
    assert_matches_ort(model, feeds, atol=1e-5, rtol=1e-5)


def _q(shape, seed):
    return _rng(seed).integers(0, 256, shape).astype(np.uint8)


@pytest.mark.parametrize("op_type", ["QLinearSigmoid", "QLinearLeakyRelu", "QLinearGlobalAveragePool",
                                     "QLinearAveragePool", "QLinearConcat"])
def test_qlinear_contrib_ops(op_type):
    u8 = TensorProto.UINT8
    x = _q((1, 3, 6, 6), 10)
    inits = [("xs", np.asarray(0.05, np.float32)), ("xz", np.asarray(128, np.uint8)),
             ("ys", np.asarray(0.02, np.float32)), ("yz", np.asarray(100, np.uint8))]
    feeds, vis = {"x": x}, [_vi("x", u8, [1, 3, 6, 6])]
    if op_type == "QLinearConcat":
        feeds["x2"] = _q((1, 2, 6, 6), 11)
        vis.append(_vi("x2", u8, [1, 2, 6, 6]))
        inits += [("x2s", np.asarray(0.03, np.float32)), ("x2z", np.asarray(90, np.uint8))]
        node = helper.make_node(op_type, ["ys", "yz", "x", "xs", "xz", "x2", "x2s", "x2z"], ["y"], domain=MS, axis=1)
    else:
        attrs = {"alpha": 0.1} if op_type == "QLinearLeakyRelu" else {}
        if op_type == "QLinearAveragePool":
            attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 0}
        node = helper.make_node(op_type, ["x", "xs", "xz", "ys", "yz"], ["y"], domain=MS, **attrs)
    model = _declare_outputs(_model([node], vis, [_vi("y", u8)], inits), feeds)
    if op_type != "QLinearAveragePool":
        assert_matches_ort(model, feeds)
        return
    # ORT sums the dequantized window in float, in its loop order: ties may round one code apart
    import portarun

    from ._ort_parity import ort_run

    got = portarun.compile(portarun.Model.from_proto(model), "xla:cpu").run(feeds)["y"]
    want = ort_run(model, feeds)["y"]
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.max(np.abs(got.astype(np.int32) - want)) <= 1


@pytest.mark.parametrize("with_zero_points", [False, True])
def test_gather_block_quantized_packed_uint8(with_zero_points):
    rng = _rng(12)
    rows, k, block = 10, 64, 32
    values = rng.integers(0, 16, (rows, k))
    packed = (values[:, 0::2] | (values[:, 1::2] << 4)).astype(np.uint8)
    inits = [("data", packed), ("scales", (rng.random((rows, k // block)) * 0.1 + 0.01).astype(np.float32))]
    inputs = ["data", "ids", "scales"]
    if with_zero_points:
        zeros = rng.integers(0, 16, (rows, k // block))
        inits.append(("zp", (zeros[:, 0::2] | (zeros[:, 1::2] << 4)).astype(np.uint8)))
        inputs.append("zp")
    node = helper.make_node("GatherBlockQuantized", inputs, ["y"], domain=MS, bits=4, block_size=block,
                            gather_axis=0, quantize_axis=1)
    model = _model([node], [_vi("ids", TensorProto.INT64, [2, 3])], [_vi("y")], inits)
    assert_matches_ort(model, {"ids": np.asarray([[0, 9, 3], [3, 3, 7]], np.int64)})
