"""int4 DQ+MatMul lowered to MatMulNBits computes what the neutral artifact computes."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.quantize import RandomCalibration
from portarun_backends.onnxruntime.lowering import lower_int4_matmuls, lower_weight_matmuls


@pytest.fixture(scope="module")
def small_transformer():
    # ffn 200 and hidden 96: reduction dims that no block size divides
    return portarun.models.build("transformer", hidden=96, heads=4, ffn=200)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("block_size", [16, 32, 128])
def test_matmulnbits_equals_neutral_dq_model(small_transformer, symmetric, block_size):
    # portable=False: ORT's MatMulNBits takes the short last block (K=200) that OpenVINO would refuse
    q = portarun.quantize(small_transformer, "int4-weight", block_size=block_size, symmetric=symmetric,
                          calibration=RandomCalibration(2, dims={"seq": 8}), accuracy_floor="cosine=0", portable=False)
    lowered, count = lower_int4_matmuls(q.proto, accuracy_level=0)
    assert count == 6
    ops = [n.op_type for n in lowered.graph.node]
    assert "MatMulNBits" in ops and "DequantizeLinear" not in ops
    feeds = portarun.random_feeds(q.model.inputs, seed=4, dims={"batch": 2, "seq": 7})
    neutral = portarun.compile(q.model, "reference", "int4-weight").run(feeds)
    exe = portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", lower_int4="matmulnbits",
                           matmulnbits_accuracy_level=0)
    assert exe.provenance.details["matmulnbits_nodes"] == 6
    assert portarun.compare(exe.run(feeds), neutral, portarun.Tolerance(rtol=1e-4, atol=1e-5))


def test_lowering_skips_what_it_cannot_express():
    # the mlp's Gemms (transB, weight blocked along axis 1) are lowered now; one with alpha != 1 is not
    q = portarun.quantize("builtin:mlp", "int4-weight", accuracy_floor="cosine=0")
    assert lower_int4_matmuls(q.proto)[1] == 3
    scaled = onnx.ModelProto()
    scaled.CopyFrom(q.proto)
    for node in scaled.graph.node:
        if node.op_type == "Gemm":
            node.attribute.append(helper.make_attribute("alpha", 0.5))
    lowered, count = lower_int4_matmuls(scaled)
    assert count == 0 and lowered == scaled


def test_accuracy_level_is_exposed_and_reported(small_transformer):
    q = portarun.quantize(small_transformer, "int4-weight", accuracy_floor="cosine=0",
                          calibration=RandomCalibration(2, dims={"seq": 8}))
    feeds = portarun.random_feeds(q.model.inputs, seed=4, dims={"seq": 16})
    neutral = portarun.compile(q.model, "reference", "int4-weight").run(feeds)["y"]
    # int8 activations are a different precision, asked for by name (ORT's own default, level 4, is not used)
    dynamic = portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", activations="int8-dynamic")
    assert dynamic.provenance.details["session.qdq_matmulnbits_accuracy_level"] == "4"
    assert dynamic.provenance.details["activations"] == "int8-dynamic"
    # the default keeps float activations, carried to level 4's kernel as two int8 digits per block
    default = portarun.compile(q.model, "onnxruntime:cpu", "int4-weight")
    assert default.provenance.details["activations"] == "float (2 int8 digits per block)"
    assert default.provenance.details["lower_int4"] == "digits" and default.provenance.details["matmulnbits_nodes"]
    assert default.provenance.details["int4_digit_matmul_nodes"] == default.provenance.details["matmulnbits_nodes"]
    exact = portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", matmulnbits_accuracy_level=0)
    assert exact.provenance.details["session.qdq_matmulnbits_accuracy_level"] == "0"
    assert exact.provenance.details["lower_int4"] == "matmulnbits"  # a chosen level governs: no digits
    plain = portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", lower_int4="matmulnbits")
    assert plain.provenance.details["activations"] == "float" and "int4_matmuls" not in plain.provenance.details
    err_dynamic = np.abs(dynamic.run(feeds)["y"] - neutral).max()
    err_default = np.abs(default.run(feeds)["y"] - neutral).max()
    err_exact = max(np.abs(exact.run(feeds)["y"] - neutral).max(), np.abs(plain.run(feeds)["y"] - neutral).max())
    # level 4 quantizes activations to int8 inside the kernel; level 0/1 compute the artifact, and the
    # digits come within ~2^-16 of each block's max of it: orders of magnitude closer than level 4 alone
    assert err_exact < 1e-4 < err_dynamic and err_default < err_dynamic / 30
    with pytest.raises(portarun.UsageError, match="digits"):
        portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", lower_int4="digits", matmulnbits_accuracy_level=1)
    with pytest.raises(portarun.UsageError, match="digits"):
        portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", lower_int4="digits", activations="int8-dynamic")
    with pytest.raises(portarun.UsageError, match="activations"):
        portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", activations="int4")
    with pytest.raises(portarun.UsageError, match="0-4"):
        portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", matmulnbits_accuracy_level=7)
    with pytest.raises(portarun.UsageError, match="lower_int4"):
        portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", lower_int4="gguf")


def test_int8_per_channel_lowering_equals_neutral_dq_model(small_transformer):
    q = portarun.quantize(small_transformer, "int8-weight", calibration=RandomCalibration(2, dims={"seq": 8}))
    lowered, count = lower_weight_matmuls(q.proto, accuracy_level=0, bits=(8,))
    assert count == 6 and "DequantizeLinear" not in [n.op_type for n in lowered.graph.node]
    assert lower_int4_matmuls(q.proto)[1] == 0  # the int4 lowering leaves int8 weights alone
    feeds = portarun.random_feeds(q.model.inputs, seed=5, dims={"batch": 2, "seq": 9})
    neutral = portarun.compile(q.model, "reference", "int8-weight").run(feeds)
    exe = portarun.compile(q.model, "onnxruntime:cpu", "int8-weight", lower_int8="matmulnbits",
                           matmulnbits_accuracy_level=0)
    assert exe.provenance.details["matmulnbits_nodes"] == 6
    assert portarun.compare(exe.run(feeds), neutral, portarun.Tolerance(rtol=1e-4, atol=1e-5))
    # by default int8 weight-only MatMuls are lowered too, with float activations (as 3 int8 digits, named);
    # the fp32 fold stays selectable; left to ORT (lower_int8 none) its own fusion gets the same level through
    # the session config, never its default 4 silently
    default = portarun.compile(q.model, "onnxruntime:cpu", "int8-weight")
    assert default.provenance.details["activations"] == "float (3 int8 digits, base 128)"
    assert "matmulinteger-digits" in default.provenance.details["int8_matmuls"]
    assert portarun.compare(default.run(feeds), neutral, portarun.Tolerance(rtol=1e-4, atol=1e-5))
    folded = portarun.compile(q.model, "onnxruntime:cpu", "int8-weight", lower_int8="fold")
    assert folded.provenance.details["activations"] == "float" and "int8_matmuls" in folded.provenance.details
    assert "MatMulInteger" not in [n.op_type for n in folded.source.proto.graph.node]
    assert portarun.compare(folded.run(feeds), neutral, portarun.Tolerance(rtol=1e-4, atol=1e-5))
    dynamic = portarun.compile(q.model, "onnxruntime:cpu", "int8-weight", activations="int8-dynamic")
    assert dynamic.provenance.details["matmulnbits_nodes"] == 6
    assert dynamic.provenance.details["session.qdq_matmulnbits_accuracy_level"] == "4"
    unlowered = portarun.compile(q.model, "onnxruntime:cpu", "int8-weight", lower_int8="none")
    assert "matmulnbits_nodes" not in unlowered.provenance.details
    assert unlowered.provenance.details["session.qdq_matmulnbits_accuracy_level"] in ("0", "1")
    assert portarun.compare(unlowered.run(feeds), neutral, portarun.Tolerance(rtol=1e-4, atol=1e-5))



@pytest.mark.parametrize("precision, kwargs", [("int8-weight", {}), ("int4-weight", {"block_size": 32}),
                                               ("int4-weight", {"block_size": 32, "symmetric": False})])
def test_embedding_gather_lowers_to_gather_block_quantized(precision, kwargs):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["h"], name="embed"),
         helper.make_node("MatMul", ["h", "w"], ["y"], name="fc")], "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 32])],
        [numpy_helper.from_array(rng.standard_normal((100, 96)).astype(np.float32), "emb"),
         numpy_helper.from_array(rng.standard_normal((96, 32)).astype(np.float32), "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    q = portarun.quantize(portarun.load(proto), precision, accuracy_floor="cosine=0", **kwargs)
    lowered, count = lower_weight_matmuls(q.proto, 0, bits=(4, 8))
    assert count == 2 and [n.op_type for n in lowered.graph.node] == ["GatherBlockQuantized", "MatMulNBits"]
    feeds = {"ids": rng.integers(0, 100, (2, 5))}
    neutral = portarun.compile(q.model, "reference", precision).run(feeds)
    exe = portarun.compile(q.model, "onnxruntime:cpu", precision, lower_int4="matmulnbits",
                           lower_int8="matmulnbits", matmulnbits_accuracy_level=0)
    assert exe.provenance.details["matmulnbits_nodes"] == 2
    assert portarun.compare(exe.run(feeds), neutral, portarun.Tolerance(rtol=1e-4, atol=1e-5))


def test_default_lowering_reads_one_embedding_row_and_keeps_float_activations():
    """decoder-tiny int4-weight on the CPU: embedding as GatherBlockQuantized, MatMuls as MatMulNBits over
    float activations' digits, recorded in provenance; the result equals the neutral artifact's."""
    model = portarun.models.build("decoder-tiny")
    q = portarun.quantize(model, "int4-weight", accuracy_floor="cosine=0",
                          dims={"batch": 1, "seq": 4, "past_seq": 0, "total_seq": 4})
    exe = portarun.compile(q.model, "onnxruntime:cpu", "int4-weight")
    details = exe.provenance.details
    assert details["activations"] == "float (2 int8 digits per block)"
    assert details["session.qdq_matmulnbits_accuracy_level"] in ("0", "1")  # ORT's own fusions: none left here
    ops = [n.op_type for n in exe.source.proto.graph.node]
    assert "GatherBlockQuantized" in ops and "MatMulNBits" in ops and details["matmulnbits_nodes"] >= 2
    feeds = portarun.random_feeds(q.model.inputs, seed=1, dims={"batch": 1, "seq": 5, "past_seq": 0, "total_seq": 5},
                                  int_high={"input_ids": 100})
    neutral = portarun.compile(q.model, "reference", "int4-weight").run(feeds)
    assert portarun.compare(exe.run(feeds), neutral, portarun.Tolerance(rtol=1e-3, atol=1e-4))


@pytest.mark.parametrize("precision, level", [("int4-weight", "int4"), ("int8-weight", "int8")])
def test_gemm_with_trans_b_lowers_to_matmulnbits_plus_bias(precision, level):
    rng = np.random.default_rng(0)
    w, c = rng.standard_normal((48, 64)).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", transB=1)], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 48])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    q = portarun.quantize(portarun.load(proto), precision, calibration=RandomCalibration(2, dims={"b": 3}),
                          block_size=32, accuracy_floor="cosine=0")
    assert q.report.nodes[0].level == level
    lowered, count = lower_weight_matmuls(q.proto, accuracy_level=0, bits=(4, 8))
    assert count == 1 and [n.op_type for n in lowered.graph.node] == ["MatMulNBits", "Add"]
    feeds = {"x": rng.standard_normal((5, 64)).astype(np.float32)}
    neutral = portarun.compile(q.model, "reference", precision).run(feeds)
    import onnxruntime as ort  # the lowered graph as ORT itself runs it (8-bit MatMulNBits reads as int4 to portarun)

    got = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert portarun.compare({"y": got}, neutral, portarun.Tolerance(rtol=1e-4, atol=1e-4))
