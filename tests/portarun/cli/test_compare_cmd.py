"""`portarun compare`: parity of two targets; --localize names the first divergent node."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from portarun.cli import main
from portarun_conformance.isolation import import_plugin

PLUGIN = str(Path(__file__).parents[2] / "conformance" / "_backends.py")


def test_matching_targets_pass(tmp_path):
    out = tmp_path / "c.json"
    result = CliRunner().invoke(main, ["compare", "builtin:cnn", "-t", "reference:cpu", "-t", "onnxruntime:cpu",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "PASS max_abs=" in result.output
    data = json.loads(out.read_text())
    assert data["comparison"]["passed"] and data["actual"]["target"] == "onnxruntime:cpu"


def test_localize_names_the_perturbed_node(monkeypatch):
    import_plugin(PLUGIN)
    monkeypatch.setenv("PORTARUN_TEST_PERTURB_NODE", "fc0")
    result = CliRunner().invoke(main, ["compare", "builtin:mlp", "-t", "onnxruntime:cpu", "-t", "perturb:cpu",
                                       "--localize"])
    assert result.exit_code == 1
    assert "first divergent node #0 'fc0' (Gemm)" in result.output
    assert "output  fc0" in result.output or "fc0_out" in result.output or "fc0" in result.output


def test_too_many_targets_is_a_usage_error():
    result = CliRunner().invoke(main, ["compare", "builtin:mlp", "-t", "a", "-t", "b", "-t", "c"])
    assert result.exit_code == 2
