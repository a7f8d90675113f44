"""Divergence localization finds exactly the node a test backend perturbs."""

from __future__ import annotations

from pathlib import Path

import pytest

import portarun
from portarun import Tolerance
from portarun_conformance import builtin_cases, localize, run_matrix
from portarun_conformance.isolation import import_plugin

PLUGIN = str(Path(__file__).with_name("_backends.py"))
PERTURB_ENV = "PORTARUN_TEST_PERTURB_NODE"


@pytest.fixture(scope="module", autouse=True)
def perturb_backend():
    import_plugin(PLUGIN)


@pytest.fixture(scope="module")
def transformer():
    return portarun.load("builtin:transformer")


def _feeds(model):
    return portarun.random_feeds(model.inputs, seed=0, dims={"batch": 1, "seq": 16})


@pytest.mark.parametrize("position", [0.3, 0.75])
def test_bisection_finds_the_perturbed_node(transformer, monkeypatch, position):
    nodes = [n for n in transformer.proto.graph.node if n.op_type != "Constant"]
    chosen = nodes[int(len(nodes) * position)]
    monkeypatch.setenv(PERTURB_ENV, chosen.name)
    found = localize(transformer, "perturb:cpu", "fp32", _feeds(transformer), reference="onnxruntime:cpu",
                     tolerance=Tolerance(rtol=1e-4, atol=1e-5))
    assert found.found, found.message
    assert (found.node_name, found.op_type) == (chosen.name, chosen.op_type)
    assert all(i["max_abs"] < 1e-5 for i in found.inputs)  # its inputs still agreed
    assert found.outputs[0]["max_abs"] == pytest.approx(0.5, rel=1e-3)  # the +0.5 shift, on its first output
    assert found.probes <= 2 + len(transformer.proto.graph.node).bit_length()  # bisection, not a linear scan


def test_matching_model_is_not_localized(transformer, monkeypatch):
    monkeypatch.setenv(PERTURB_ENV, "no-such-node")
    found = localize(transformer, "perturb:cpu", "fp32", _feeds(transformer), reference="onnxruntime:cpu")
    assert not found.found
    assert "matches the reference" in found.message


def test_failing_case_is_localized_automatically_in_the_matrix(transformer, monkeypatch):
    chosen = [n for n in transformer.proto.graph.node if n.op_type == "Softmax"][0]
    monkeypatch.setenv(PERTURB_ENV, chosen.name)  # inherited by the spawned worker
    case = [c for c in builtin_cases() if c.name == "builtin:transformer"][0]
    case = type(case)(case.name, case.source, {"batch": 1, "seq": 16}, "onnxruntime:cpu", tokens_axis="seq")
    matrix = run_matrix([case], ["perturb:cpu"], ["fp32"], runs=2, warmup=0, timeout_s=120, plugins=[PLUGIN])
    result = matrix.results[0]
    assert result.status == "fail"
    assert result.localization["found"]
    assert result.localization["node_name"] == chosen.name
    assert result.localization["op_type"] == "Softmax"
