import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun import (
    Model,
    ModelLoadError,
    ModelNotFoundError,
    ModelValidationError,
    UnsafeModelError,
    UnsupportedOpsetError,
)
from portarun.model import quantization_of


def tiny_proto(opset=17, ir=8, weight=None):
    w = weight if weight is not None else np.arange(16, dtype=np.float32).reshape(4, 4)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = ir
    return proto


def write_external(tmp_path, location, nbytes=64 * 4, length=None):
    """A model whose weight lives in external data at ``location`` (written unchecked)."""
    proto = tiny_proto(weight=np.zeros((8, 8), np.float32))
    tensor = proto.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": "0", "length": str(length if length is not None else nbytes)}
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path = tmp_path / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


def test_load_valid_model_signature(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny_proto(), path)
    model = portarun.load(path)
    assert [s.name for s in model.inputs] == ["x"]
    assert model.inputs[0].shape == ("n", 4) and model.inputs[0].dtype == np.float32
    assert model.opset == 17 and model.stats().parameters == 16


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        portarun.load(tmp_path / "nope.onnx")
    assert "builtin:mlp" in str(info.value)  # hint lists the built-ins
    with pytest.raises(ModelLoadError, match="is a directory"):
        Model.load(tmp_path)


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"this is not a protobuf \xff\xfe at all", "not a valid ONNX model"),
    (b"\x08\x01", "holds no ONNX model"),  # parses (ir_version=1) but has no graph
])
def test_not_onnx(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        portarun.load(path)


def test_truncated_file(tmp_path):
    data = tiny_proto().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises((ModelLoadError, ModelValidationError)):
        portarun.load(path)


def test_checker_failure(tmp_path):
    proto = tiny_proto()
    proto.graph.node[0].input[1] = "undefined_tensor"
    path = tmp_path / "broken.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelValidationError, match="fails ONNX validation"):
        portarun.load(path)
    assert portarun.load(path, check=False).name == "broken"  # inspect --no-check can still read it


def test_shape_inference_failure(tmp_path):
    proto = tiny_proto(weight=np.zeros((3, 4), np.float32))  # [n,4] @ [3,4] cannot multiply
    path = tmp_path / "shapes.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelValidationError):
        portarun.load(path)


def test_opset_and_ir_newer_than_onnx(tmp_path):
    path = tmp_path / "future.onnx"
    path.write_bytes(tiny_proto(opset=onnx.defs.onnx_opset_version() + 5).SerializeToString())
    with pytest.raises(UnsupportedOpsetError, match="needs ONNX opset") as info:
        portarun.load(path)
    assert "pip install -U onnx" in str(info.value)
    path.write_bytes(tiny_proto(ir=onnx.IR_VERSION + 1).SerializeToString())
    with pytest.raises(UnsupportedOpsetError, match="IR version"):
        portarun.load(path)


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_path_traversal_refused(tmp_path, location):
    (tmp_path.parent / "secret.bin").write_bytes(b"\0" * 256)
    path = write_external(tmp_path, location)
    with pytest.raises(UnsafeModelError, match="outside"):
        portarun.load(path)


def test_external_data_symlink_escape_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "weights.bin").write_bytes(b"\0" * 256)
    inside = tmp_path / "model_dir"
    inside.mkdir()
    os.symlink(outside / "weights.bin", inside / "weights.bin")
    path = write_external(inside, "weights.bin")
    with pytest.raises(UnsafeModelError, match="outside"):
        portarun.load(path)


def test_external_data_missing_or_short(tmp_path):
    path = write_external(tmp_path, "weights.bin")
    with pytest.raises(ModelNotFoundError, match="weights.bin"):
        portarun.load(path)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 100)  # 256 needed
    with pytest.raises(ModelValidationError, match="truncated"):
        portarun.load(path)


def test_save_with_external_data_round_trip(tmp_path, builtin_models):
    model = builtin_models["mlp"]
    target = tmp_path / "out" / "mlp.onnx"
    model.save(target, external_data=True)
    assert (tmp_path / "out" / "mlp.onnx.data").stat().st_size > 0
    assert target.stat().st_size < 10_000
    loaded = portarun.load(target)
    assert loaded.sha256 == model.sha256
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mlp.onnx", "mlp.onnx.data"]


def test_failed_save_keeps_previous_file(tmp_path, builtin_models, monkeypatch):
    target = tmp_path / "m.onnx"
    builtin_models["mlp"].save(target)
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save_model", boom)
    with pytest.raises(OSError):
        builtin_models["cnn"].save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_quantization_of_detects_forms():
    assert quantization_of(Model(tiny_proto())) is None
    w8 = numpy_helper.from_array(np.ones((4, 4), np.int8), "w_q")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "s"], ["w"]), helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w8, scale])
    assert quantization_of(Model(helper.make_model(graph))) == "int8-weight"
    act = [helper.make_node("QuantizeLinear", ["x", "s"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "s"], ["xd"])]
    graph2 = helper.make_graph(act + nodes[:1] + [helper.make_node("MatMul", ["xd", "w"], ["y"])], "q",
                               graph.input, graph.output, [w8, scale])
    assert quantization_of(Model(helper.make_model(graph2))) == "int8"
