"""int4 DQ+MatMul lowered to MatMulNBits computes what the neutral artifact computes."""

import numpy as np
import pytest

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
    q = portarun.quantize(small_transformer, "int4-weight", block_size=block_size, symmetric=symmetric,
                          calibration=RandomCalibration(2, dims={"seq": 8}), accuracy_floor="cosine=0")
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
    q = portarun.quantize("builtin:mlp", "int4-weight", accuracy_floor="cosine=0")  # Gemm, transB: axis 1
    lowered, count = lower_int4_matmuls(q.proto)
    assert count == 0 and lowered == q.proto


def test_accuracy_level_is_exposed_and_reported(small_transformer):
    q = portarun.quantize(small_transformer, "int4-weight", accuracy_floor="cosine=0",
                          calibration=RandomCalibration(2, dims={"seq": 8}))
    feeds = portarun.random_feeds(q.model.inputs, seed=4, dims={"seq": 16})
    neutral = portarun.compile(q.model, "reference", "int4-weight").run(feeds)["y"]
    default = portarun.compile(q.model, "onnxruntime:cpu", "int4-weight")
    assert default.provenance.details["session.qdq_matmulnbits_accuracy_level"].startswith("4")
    exact = portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", matmulnbits_accuracy_level=0)
    assert exact.provenance.details["session.qdq_matmulnbits_accuracy_level"] == "0"
    err_default = np.abs(default.run(feeds)["y"] - neutral).max()
    err_exact = np.abs(exact.run(feeds)["y"] - neutral).max()
    # level 4 quantizes activations to int8 inside the kernel; level 0 computes the artifact exactly
    assert err_exact < 1e-4 < err_default
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
    # ORT fuses int8 weight-only MatMuls by itself too, at its default level 4 (int8 activations): reported
    default = portarun.compile(q.model, "onnxruntime:cpu", "int8-weight")
    assert default.provenance.details["session.qdq_matmulnbits_accuracy_level"].startswith("4")



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
