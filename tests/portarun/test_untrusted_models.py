"""Malformed and hostile model files: every one is a PortarunError (ModelError) with a fix, never a raw exception.

Each case is one defect a mutation fuzz found leaking out of ``portarun.load`` (issue 12, part 4).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.errors import ModelError, ModelValidationError, UnsafeModelError


def _matmul_model() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _identity_model(dims) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _external(model: onnx.ModelProto, folder, **entries) -> onnx.ModelProto:
    (folder / "w.bin").write_bytes(np.ones(16, np.float32).tobytes())
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "w.bin", **entries}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model


def _write(model: onnx.ModelProto, folder, *, replace: tuple[bytes, bytes] | None = None):
    path = folder / "m.onnx"
    data = model.SerializeToString()
    if replace is not None:
        assert replace[0] in data
        data = data.replace(*replace)  # bytes protobuf's Python API would refuse to set
    path.write_bytes(data)
    return path


def _refused(path, kind=ModelError, words=()):
    with pytest.raises(kind) as caught:
        portarun.load(path)
    text = str(caught.value)
    assert caught.value.hint, text
    assert len(text.splitlines()) == 1, text
    for word in words:
        assert word in text, text
    return text


def test_the_base_model_loads(tmp_path):
    # the cases below differ from this valid model by one defect each
    assert portarun.load(_write(_external(_matmul_model(), tmp_path), tmp_path)).inputs[0].name == "x"


def test_non_numeric_external_data_offset(tmp_path):
    _refused(_write(_external(_matmul_model(), tmp_path, offset="abc"), tmp_path), ModelValidationError,
             ("offset", "'abc'", "'w'"))


def test_external_data_path_component_too_long(tmp_path):
    _refused(_write(_external(_matmul_model(), tmp_path, location="a" * 300), tmp_path), ModelValidationError,
             ("too long",))


def test_external_data_location_not_utf8(tmp_path):
    model = _external(_matmul_model(), tmp_path, location="w.bXn")
    _refused(_write(model, tmp_path, replace=(b"w.bXn", b"w.b\xffn")), ModelValidationError, ("UTF-8",))


def test_external_data_location_with_nul_byte(tmp_path):
    _refused(_write(_external(_matmul_model(), tmp_path, location="w\x00.bin"), tmp_path), UnsafeModelError,
             ("NUL",))


def test_external_data_symlink_loop(tmp_path):
    os.symlink(tmp_path / "l2", tmp_path / "l1")
    os.symlink(tmp_path / "l1", tmp_path / "l2")
    _refused(_write(_external(_matmul_model(), tmp_path, location="l1"), tmp_path), UnsafeModelError, ("loop",))


@pytest.mark.parametrize("field", ["op_type", "domain", "input name", "initializer name", "dim name"])
def test_strings_that_are_not_utf8(tmp_path, field):
    model = _matmul_model()
    if field == "op_type":
        model.graph.node[0].op_type = "QQQQ"
    elif field == "domain":
        model.graph.node[0].domain = "QQQQ"
    elif field == "input name":
        model.graph.input[0].name = model.graph.node[0].input[0] = "QQQQ"
    elif field == "initializer name":
        model.graph.initializer[0].name = model.graph.node[0].input[1] = "QQQQ"
    else:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "QQQQ"
    _refused(_write(model, tmp_path, replace=(b"QQQQ", b"Q\xff\xfeQ")), ModelValidationError)


@pytest.mark.parametrize("where", ["input", "output", "initializer"])
def test_element_type_999(tmp_path, where):
    model = _matmul_model()
    if where == "initializer":
        model.graph.initializer[0].data_type = 999
    else:
        getattr(model.graph, where)[0].type.tensor_type.elem_type = 999
    _refused(_write(model, tmp_path), ModelValidationError, ("999",))


def test_local_function_tensors_get_the_external_data_check(tmp_path):
    model = _matmul_model()
    const = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones(4, np.float32), "c"))
    tensor = const.attribute[0].t
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../outside.bin"
    (tmp_path.parent / "outside.bin").write_bytes(np.ones(4, np.float32).tobytes())
    model.functions.append(helper.make_function("local", "F", ["a"], ["b"],
                                                [const, helper.make_node("Add", ["a", "c"], ["b"])],
                                                [helper.make_opsetid("", 17)]))
    model.opset_import.append(helper.make_opsetid("local", 1))
    model.graph.node.append(helper.make_node("F", ["y"], ["z"], domain="local"))
    model.graph.output[0].name = "z"
    _refused(_write(model, tmp_path), UnsafeModelError, ("'c'", "outside"))


@pytest.mark.parametrize("dims", [[2**63 - 1, 4], [10**12, 10**12]])
def test_declared_sizes_beyond_addressable_memory_are_refused_before_allocating(tmp_path, dims):
    _refused(_write(_identity_model(dims), tmp_path), ModelValidationError, ("addressable memory",))


@pytest.mark.parametrize("marker", [-1, 0])
def test_dynamic_markers_are_not_errors(tmp_path, marker):
    # exporters write -1 (paddle2onnx) or 0 for a dynamic axis: that is a dim, not a defect
    model = portarun.load(_write(_identity_model([marker, 4]), tmp_path))
    assert model.inputs[0].name == "x"


@pytest.mark.parametrize("dims", [[-4, 4], [2**62, 4]])
def test_stored_tensors_with_impossible_dims(tmp_path, dims):
    model = _matmul_model()
    model.graph.initializer[0].dims[:] = dims
    _refused(_write(model, tmp_path), ModelValidationError, ("'w'",))


def test_whatever_else_the_parser_trips_on_is_a_model_error(tmp_path, monkeypatch):
    # the safety net: an unforeseen exception inside loading still comes out as one ModelError line
    from portarun import model_checks

    def boom(*args):
        raise OverflowError("something nobody foresaw")

    monkeypatch.setattr(model_checks, "check_types_and_sizes", boom)
    text = _refused(_write(_matmul_model(), tmp_path), ModelError, ("OverflowError", "something nobody foresaw"))
    assert "m.onnx" in text


def test_big_endian_feeds_are_converted(tmp_path):
    model = portarun.load(_write(_matmul_model(), tmp_path))
    feeds = np.arange(4, dtype=np.float32).reshape(1, 4)
    with portarun.compile(model, "reference") as exe:
        native = exe.run({"x": feeds})["y"]
        swapped = exe.run({"x": feeds.astype(">f4")})["y"]
    np.testing.assert_array_equal(native, swapped)


def test_a_wrong_big_endian_dtype_is_named_with_its_byte_order(tmp_path):
    model = portarun.load(_write(_matmul_model(), tmp_path))
    with portarun.compile(model, "reference") as exe:
        with pytest.raises(portarun.InputError, match=r"expected dtype float32, got >f8 big-endian"):
            exe.run({"x": np.zeros((1, 4), ">f8")})


ORT_SCRIPT = """
import numpy as np, portarun
from onnx import helper, TensorProto, numpy_helper
g = helper.make_graph([helper.make_node("Gather", ["d", "i"], ["y"])], "g",
    [helper.make_tensor_value_info("i", TensorProto.INT64, [2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    [numpy_helper.from_array(np.arange(4, dtype=np.float32), "d")])
exe = portarun.compile(portarun.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])),
                       "onnxruntime:cpu")
try:
    exe.run({"i": np.array([0, 99])})
except portarun.RunError as exc:
    print("RunError:", exc.message)
"""


@pytest.mark.parametrize("env, spam", [(None, False), ("1", True)])
def test_onnxruntime_error_lines_are_silenced_unless_asked_for(env, spam):
    pytest.importorskip("onnxruntime")
    import subprocess

    environ = {k: v for k, v in os.environ.items() if k != "PORTARUN_SDK_LOG"}
    if env is not None:
        environ["PORTARUN_SDK_LOG"] = env
    done = subprocess.run([sys.executable, "-c", ORT_SCRIPT], capture_output=True, text=True, env=environ,
                          timeout=120)
    assert "RunError: onnxruntime failed to run" in done.stdout, done.stderr
    assert ("[E:onnxruntime" in done.stderr) is spam, done.stderr
