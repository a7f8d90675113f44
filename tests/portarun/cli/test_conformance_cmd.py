"""`portarun conformance`: the matrix from the command line, its four reports, exit codes, baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from portarun.cli import main
from portarun_conformance.report import validate

PLUGIN = str(Path(__file__).parents[2] / "conformance" / "_backends.py")


def invoke(*args: str):
    return CliRunner().invoke(main, ["conformance", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("conformance")
    result = invoke("builtin:mlp", "-t", "onnxruntime:cpu", "-p", "fp32", "-p", "bf16", "--suite", "models",
                    "--runs", "3", "--warmup", "1", "--out-dir", str(out))
    return result, out


def test_writes_four_reports_and_a_table(first_run):
    result, out = first_run
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"report.json", "report.xml", "summary.md", "plot.png"}
    document = json.loads((out / "report.json").read_text())
    validate(document)
    statuses = {r["precision"]: r["status"] for r in document["results"]}
    assert statuses == {"fp32": "pass", "bf16": "skip"}  # onnxruntime has no bf16: skipped with the reason
    assert "bf16" in next(r["message"] for r in document["results"] if r["precision"] == "bf16")
    assert "onnxruntime:cpu  builtin:mlp  fp32" in result.output
    assert "1 pass, 1 skip" in result.output


def test_baseline_regression_fails_the_run(first_run, tmp_path):
    _, out = first_run
    old = json.loads((out / "report.json").read_text())
    for entry in old["results"]:
        if entry["performance"]:
            entry["performance"]["median_latency"]["value"] /= 100  # pretend it used to be 100x faster
    baseline = tmp_path / "old.json"
    baseline.write_text(json.dumps(old))
    result = invoke("builtin:mlp", "-t", "onnxruntime:cpu", "-p", "fp32", "--suite", "models", "--runs", "3",
                    "--baseline", str(baseline), "--out-dir", str(tmp_path / "new"))
    assert result.exit_code == 1
    assert "REGRESSION builtin:mlp on onnxruntime:cpu fp32 (latency)" in result.output
    document = json.loads((tmp_path / "new" / "report.json").read_text())
    assert document["baseline"]["regressions"][0]["kind"] == "latency"
    assert document["summary"]["passed"] is False


def test_failing_cell_exits_1_and_names_the_divergent_node(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTARUN_TEST_PERTURB_NODE", "relu1")
    result = invoke("builtin:mlp", "-t", "perturb:cpu", "-p", "fp32", "--suite", "models", "--runs", "2",
                    "--plugin", PLUGIN, "--out-dir", str(tmp_path), "--price-per-hour", "3.6")
    assert result.exit_code == 1, result.output
    assert "FAIL builtin:mlp on perturb:cpu fp32" in result.output
    assert "'relu1' (Relu)" in result.output
    junit = (tmp_path / "report.xml").read_text()
    assert "<failure" in junit and "relu1" in junit


def test_node_suite_integration_and_cache(tmp_path):
    """The real ONNX node suite, restricted to one op, on onnxruntime: counts land in every report; a
    rerun with the same backend code, SDK and tolerances reuses the result."""
    from portarun_conformance.nodes import fingerprint

    args = ("-t", "onnxruntime:cpu", "--suite", "onnx-node", "--node-ops", "Relu")
    fresh = invoke(*args, "--no-cache", "--out-dir", str(tmp_path / "a"))
    assert fresh.exit_code == 0, fresh.output
    counts = json.loads((tmp_path / "a" / "report.json").read_text())["node_suite"]["targets"]["onnxruntime:cpu"]
    assert counts["total"] >= 1 and counts["passed"] == counts["total"] and not counts["cached"]
    assert "onnx node suite onnxruntime:cpu:" in fresh.output
    assert "## ONNX node suite" in (tmp_path / "a" / "summary.md").read_text()
    again = invoke(*args, "--out-dir", str(tmp_path / "b"))
    assert again.exit_code == 0 and "(cached)" in again.output
    cached = json.loads((tmp_path / "b" / "report.json").read_text())["node_suite"]["targets"]["onnxruntime:cpu"]
    assert cached["cached"] and cached["passed"] == counts["passed"]
    assert cached["fingerprint"] == fingerprint("onnxruntime:cpu", 1e-3, 1e-5, ["Relu"])
    assert fingerprint("onnxruntime:cpu", 1e-3, 1e-5, ["Relu"]) != fingerprint("onnxruntime:cpu", 1e-2, 1e-5, ["Relu"])
