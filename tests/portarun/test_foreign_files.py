"""Files as other exporters write them: dynamic dims as -1/0 (paddle2onnx, tf2onnx), weights in
Constant nodes, wrong declared output shapes, and models another tool already quantized."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.errors import UnsupportedError

CPU_TARGETS = ("onnxruntime:cpu", "openvino:cpu", "xla:cpu", "reference:cpu")


def _available(target: str) -> bool:
    return target.split(":")[0] in {b.name for b in portarun.list_backends() if b.available}


def _constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name + "_value"))


def paddle_style_model() -> onnx.ModelProto:
    """What paddle2onnx writes: dims -1 and '?', every weight in a Constant node, Reshape to [0, -1]."""
    rng = np.random.default_rng(0)
    nodes = [
        _constant("conv_w", rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.2),
        _constant("conv_b", rng.standard_normal(8).astype(np.float32)),
        _constant("fc_w", rng.standard_normal((8, 10)).astype(np.float32)),
        _constant("fc_b", rng.standard_normal(10).astype(np.float32)),
        _constant("flat", np.array([0, -1], np.int64)),
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Reshape", ["pool", "flat"], ["flat_out"]),
        helper.make_node("MatMul", ["flat_out", "fc_w"], ["fc"]),
        helper.make_node("Add", ["fc", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "paddle_style",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", -1])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [-1, 10])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="PaddlePaddle")


def _matmul_model(input_shape, output_shape) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_paddle_style_file_runs_everywhere_and_counts_its_constant_weights(tmp_path):
    onnx.save(paddle_style_model(), tmp_path / "paddle.onnx")
    model = portarun.load(tmp_path / "paddle.onnx")
    assert [s.shape for s in model.inputs] == [(None, 3, None, None)] and model.outputs[0].shape == (None, 10)
    assert "x:0" in model.notes[0] and model.dynamic_dims_written_as_numbers == ["x:0", "x:2", "x:3", "probs:0"]
    assert model.stats().parameters == 8 * 27 + 8 + 80 + 10 + 2  # the Constant nodes are the weights
    feeds = portarun.random_feeds(model, seed=0, dims={"x:0": 2})
    assert feeds["x"].shape == (2, 3, 64, 64)  # unnamed image dims get an image-sized default
    with portarun.compile(model, "onnxruntime:cpu") as exe:
        expected = exe.run(feeds)
    for target in CPU_TARGETS[1:]:
        if not _available(target):
            continue
        with portarun.compile(model, target) as exe:
            np.testing.assert_allclose(exe.run(feeds)["probs"], expected["probs"], rtol=1e-4, atol=1e-5)
            other = exe.run({"x": np.ones((1, 3, 32, 48), np.float32)})["probs"]  # another shape, same compile
            assert other.shape == (1, 10)
            assert "x:0" in exe.provenance.details["model_notes"][0]
            exe.save(tmp_path / target.replace(":", "_"))
        with portarun.load_compiled(tmp_path / target.replace(":", "_")) as again:  # the artifact keeps it dynamic
            assert again.inputs[0].shape == (None, 3, None, None)
            np.testing.assert_allclose(again.run(feeds)["probs"], expected["probs"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("marker", [-1, 0])
def test_a_dim_written_as_a_number_is_dynamic_on_every_backend(marker):
    model = portarun.load(_matmul_model([marker, 3], [marker, 4]))
    for target in CPU_TARGETS:
        if _available(target):
            with portarun.compile(model, target) as exe:
                assert exe.run({"x": np.ones((5, 3), np.float32)})["y"].shape == (5, 4)


def test_wrong_declared_output_shapes_run_and_are_reported():
    model = portarun.load(_matmul_model(["n", 3], [20, 1, 8210]))
    assert "declared output shapes differ" in model.notes[0]
    feeds = {"x": np.ones((2, 3), np.float32)}
    for target in CPU_TARGETS:
        if _available(target):
            with portarun.compile(model, target) as exe:
                assert exe.run(feeds)["y"].shape == (2, 4)
                assert "declared output shapes differ" in exe.provenance.details["model_notes"][0]


def test_a_file_quantized_by_onnxruntime_runs_at_the_precision_it_carries(tmp_path):
    quantization = pytest.importorskip("onnxruntime.quantization")
    portarun.models.build("mlp").save(tmp_path / "mlp.onnx")
    quantization.quantize_dynamic(str(tmp_path / "mlp.onnx"), str(tmp_path / "mlp.dyn.onnx"),
                                  weight_type=quantization.QuantType.QInt8)
    model = portarun.load(tmp_path / "mlp.dyn.onnx")
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= set(model.stats().op_histogram)
    feeds = portarun.random_feeds(model, seed=2, dims={"batch": 3})
    with portarun.compile(model, "onnxruntime:cpu") as exe:  # no precision: as the model is written
        expected = exe.run(feeds)["logits"]
        assert exe.precision == portarun.Precision.INT8
        assert exe.provenance.details["precision_source"] == "as the model is written"
    with pytest.raises(UnsupportedError, match="already quantized"):
        portarun.compile(model, "onnxruntime:cpu", "fp32")  # asking for fp32 explicitly still says why not
    for target in ("openvino:cpu", "xla:cpu"):
        if _available(target):
            with portarun.compile(model, target) as exe:
                np.testing.assert_allclose(exe.run(feeds)["logits"], expected, rtol=1e-4, atol=1e-4)


def test_a_model_with_wrong_declared_outputs_quantizes():
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((64, 32)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [20, 1, 8210])], [w])
    model = portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    result = portarun.quantize(model, "int8-weight")  # the checker of the result tolerates the same declaration
    assert "DequantizeLinear" in result.model.stats().op_histogram
    with portarun.compile(result.model, "onnxruntime:cpu", "int8-weight") as exe:
        assert exe.run({"x": np.ones((3, 64), np.float32)})["y"].shape == (3, 32)


def test_weights_in_constant_nodes_are_quantized_like_initializers():
    from portarun.model import constant_weights_as_initializers, quantization_of

    model = portarun.load(paddle_style_model())
    promoted = constant_weights_as_initializers(model.proto)
    assert {t.name for t in promoted.graph.initializer} == {"conv_w", "fc_w"}  # the bias and shape stay Constants
    assert constant_weights_as_initializers(portarun.models.build("mlp").proto) is None
    result = portarun.quantize(model, "int8-weight", accuracy_floor="cosine=0.9",
                               calibration=[portarun.random_feeds(model, seed=s, dims={"x:2": 16, "x:3": 16})
                                            for s in range(4)])
    assert quantization_of(result.model) == "int8-weight" and result.report.counts().get("int8", 0) >= 1
