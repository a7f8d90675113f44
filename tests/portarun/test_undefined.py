"""Feeds on which the result is undefined are reported as a divergence, never as a silent pass."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun import models


def _gather():
    graph = helper.make_graph([helper.make_node("Gather", ["d", "i"], ["y"], name="lookup")], "g",
                              [helper.make_tensor_value_info("i", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                              [numpy_helper.from_array(np.arange(4, dtype=np.float32), "d")])
    return portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _int_div():
    graph = helper.make_graph([helper.make_node("Div", ["a", "b"], ["y"], name="ratio")], "g",
                              [helper.make_tensor_value_info("a", TensorProto.INT32, [3]),
                               helper.make_tensor_value_info("b", TensorProto.INT32, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [3])])
    return portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_out_of_range_gather_ids_are_named():
    reasons = portarun.undefined_behaviour(_gather(), {"i": np.array([1, 99])})
    assert len(reasons) == 1 and "Gather node 'lookup'" in reasons[0] and "outside [-4, 3]" in reasons[0]
    assert portarun.undefined_behaviour(_gather(), {"i": np.array([1, -4])}) == []


def test_integer_division_by_zero_is_named():
    feeds = {"a": np.array([1, 2, 3], np.int32), "b": np.array([1, 0, 3], np.int32)}
    assert "integer division by zero" in portarun.undefined_behaviour(_int_div(), feeds)[0]
    assert portarun.undefined_behaviour(_int_div(), {**feeds, "b": np.ones(3, np.int32)}) == []


def test_nan_inputs_are_named():
    model = models.build("mlp")
    feeds = portarun.random_feeds(model.inputs, seed=0)
    assert portarun.undefined_behaviour(model, feeds) == []
    feeds["x"][0, 3] = np.nan
    assert "holds 1 NaN" in portarun.undefined_behaviour(model, feeds)[0]


def test_an_initializer_with_extra_bytes_is_named():
    model = _gather()
    model.proto.graph.initializer[0].raw_data += b"\0" * 8
    assert "8 bytes more than its shape needs" in portarun.undefined_behaviour(model, {})[0]


def test_a_comparison_on_undefined_feeds_never_passes_even_when_outputs_agree():
    outputs = {"y": np.array([1.0, 0.0], np.float32)}
    comparison = portarun.compare(outputs, dict(outputs), undefined=["Gather node 'lookup': index 99"])
    assert not comparison and comparison.divergent
    assert comparison.summary().startswith("DIVERGENCE (outputs agree, but the result is undefined)")
    assert comparison.to_dict()["undefined"] == ["Gather node 'lookup': index 99"]
    assert portarun.compare(outputs, dict(outputs))  # without a reason it passes as before


@pytest.mark.parametrize("target", ["openvino:cpu", "xla:cpu"])
def test_backends_that_answer_out_of_range_gathers_are_flagged(target):
    pytest.importorskip({"openvino:cpu": "openvino", "xla:cpu": "jax"}[target])
    model, feeds = _gather(), {"i": np.array([1, 99])}
    with portarun.compile(model, target) as exe:
        try:
            actual = exe.run(feeds)
        except portarun.RunError:
            pytest.skip(f"{target} refuses the index itself")
    comparison = portarun.compare(actual, {"y": np.array([1.0, 0.0], np.float32)},
                                  undefined=portarun.undefined_behaviour(model, feeds))
    assert comparison.divergent and not comparison
    assert "Gather node 'lookup'" in comparison.summary()
