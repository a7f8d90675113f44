"""An If/Loop body reads outer-scope initializers by name, without listing them as inputs of its node.

silero-vad (the real-model corpus) slices its LSTM weights inside an If branch; the quantizer's one float
session (swap.py) and the rewrite kept only the initializers a *main-graph* node reads, so the search
session was an invalid model ("input 'model.decoder.rnn.weight_ih' ... is not output of any previous
nodes") and quantizing failed at every precision. This is that layout, minimal: ``table`` read only
inside the branches, ``w`` quantized in the main graph and read inside a branch too.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.quantize import RandomCalibration
from portarun.plugin import used_names


def _if_reading_outer_initializers() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 16)).astype(np.float32)
    table = rng.standard_normal((16,)).astype(np.float32)
    then_branch = helper.make_graph(  # y = x @ w + table (w read again here, from the outer scope)
        [helper.make_node("MatMul", ["x", "w"], ["t_mm"]), helper.make_node("Add", ["t_mm", "table"], ["t_out"])],
        "then", [], [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, ["b", 16])])
    else_branch = helper.make_graph(  # y = h - table
        [helper.make_node("Sub", ["h", "table"], ["e_out"])],
        "else", [], [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, ["b", 16])])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
             helper.make_node("If", ["flag"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch)]
    graph = helper.make_graph(
        nodes, "if_outer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 32]),
                            helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 16])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(table, "table")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


def test_used_names_reach_into_subgraphs():
    assert {"table", "w", "h", "x", "flag"} <= used_names(_if_reading_outer_initializers().graph)


def _samples(flag: bool, count: int, seed: int):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((2, 32)).astype(np.float32), "flag": np.array(flag)} for _ in range(count)]


@pytest.mark.parametrize("precision", ["int8-weight", "int4-weight"])
def test_a_model_whose_branches_read_outer_initializers_quantizes_and_runs(precision):
    model = portarun.load(_if_reading_outer_initializers())
    q = portarun.quantize(model, precision, calibration=_samples(True, 4, 0), validation=_samples(True, 4, 1),
                          accuracy_floor="cosine=0")
    assert {n.node: n.level for n in q.report.nodes}["fc"] == precision.split("-")[0]
    names = {t.name for t in q.proto.graph.initializer}
    assert "table" in names and "w" in names, names  # both still read by the branches
    onnx.checker.check_model(q.proto, full_check=True)
    for flag in (True, False):
        feeds = _samples(flag, 1, 2)[0]
        with portarun.compile(model, "onnxruntime:cpu", "fp32") as exe:
            expected = exe.run(feeds)["y"]
        with portarun.compile(q.model, "onnxruntime:cpu", precision) as exe:
            got = exe.run(feeds)["y"]
        cosine = float(np.sum(got * expected) / (np.linalg.norm(got) * np.linalg.norm(expected)))
        assert cosine > 0.9, (flag, cosine)


@pytest.mark.parametrize("target", ["openvino:cpu", "xla:cpu"])
def test_the_int4_artifact_with_branches_compiles_on_the_other_cpu_backends(target):
    from portarun.quantize import check_on_targets

    try:
        portarun.get_backend(target.split(":")[0]).devices()
    except portarun.PortarunError as exc:
        pytest.skip(f"{target} unavailable here: {exc}")
    q = portarun.quantize(portarun.load(_if_reading_outer_initializers()), "int4-weight",
                          calibration=_samples(True, 4, 0), validation=_samples(True, 4, 1), accuracy_floor="cosine=0")
    assert check_on_targets(q.model, "int4-weight", [target]) == []
