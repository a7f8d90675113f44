"""Reports: JSON against its schema, JUnit parsable, Markdown, PNG; baseline regressions."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from portarun_conformance import builtin_cases, run_matrix
from portarun_conformance.baseline import find_regressions
from portarun_conformance.hardware import default_assumptions
from portarun_conformance.isolation import import_plugin
from portarun_conformance.junit import write_junit
from portarun_conformance.markdown import write_markdown
from portarun_conformance.nodes import run_node_suites
from portarun_conformance.plot import plot_report
from portarun_conformance.report import SCHEMA_ID, attach_costs, build_report, load_report, validate, write_json

PLUGIN = str(Path(__file__).with_name("_backends.py"))


def fake_node_task(target, rtol, atol, case_timeout_s, ops=None, part=0, parts=1, mode="full"):
    return {"counts": {"pass": 7, "fail": 2, "error": 1, "skip": 0}, "per_op": {"Relu": {"pass": 7}},
            "failing": [], "seconds": 0.1}


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    import os

    import_plugin(PLUGIN)
    os.environ["PORTARUN_TEST_PERTURB_NODE"] = "fc1"
    try:
        mlp = [c for c in builtin_cases() if c.name == "builtin:mlp"]
        matrix = run_matrix(mlp, ["onnxruntime:cpu", "perturb:cpu"], ["fp32", "fp16"], runs=3, warmup=1,
                            isolate=False)
    finally:
        os.environ.pop("PORTARUN_TEST_PERTURB_NODE")
    matrix.node_suite = run_node_suites(["onnxruntime:cpu"], task=fake_node_task, isolate=False, parts=1)
    attach_costs(matrix, "h100-sxm", default_assumptions())
    return build_report(matrix, hardware="h100-sxm", assumptions=default_assumptions())


def test_json_report_follows_its_schema(document, tmp_path):
    validate(document)
    path = write_json(document, tmp_path / "r.json")
    loaded = load_report(path)  # strict JSON: no NaN/Infinity
    assert loaded["schema"] == SCHEMA_ID
    statuses = {(r["target"], r["precision"]): r["status"] for r in loaded["results"]}
    assert statuses[("onnxruntime:cpu", "fp32")] == "pass"
    assert statuses[("perturb:cpu", "fp32")] == "fail"
    assert statuses[("onnxruntime:cpu", "fp16")] == "pass"
    assert statuses[("perturb:cpu", "fp16")] == "skip"  # the test backend declares fp32 only
    passing = next(r for r in loaded["results"] if r["status"] == "pass")
    assert passing["performance"]["median_latency"]["unit"] == "ms"
    assert passing["cost"]["usd_per_million"]["unit"] == "USD/1M items"
    assert passing["cost"]["basis"] == "cloud" and passing["cost"]["inputs"]["cloud_usd_per_hour"]["value"] == 4.92
    failing = next(r for r in loaded["results"] if r["status"] == "fail")
    assert failing["localization"]["node_name"] == "fc1"
    assert loaded["node_suite"]["targets"]["onnxruntime:cpu"]["passed"] == 7
    assert loaded["summary"]["passed"] is False


def test_schema_rejects_a_broken_report(document):
    from portarun import UsageError

    broken = copy.deepcopy(document)
    broken["results"][0]["status"] = "sort-of"
    with pytest.raises(UsageError, match="status"):
        validate(broken)
    unitless = copy.deepcopy(document)
    unitless["summary"]["wall_time"] = 3.0
    with pytest.raises(UsageError):
        validate(unitless)


def test_junit_markdown_and_plot(document, tmp_path):
    root = ET.parse(write_junit(document, tmp_path / "r.xml")).getroot()
    suite = root.find("testsuite[@name='portarun.conformance']")
    assert int(suite.get("tests")) == len(document["results"]) == 4
    assert int(suite.get("failures")) == 1 and int(suite.get("skipped")) >= 1
    failure = suite.find("testcase[@classname='perturb:cpu.fp32']/failure")
    assert "max_abs=" in failure.get("message") and "tolerance rtol=" in failure.get("message")
    assert "fc1" in failure.text
    assert root.find("testsuite[@name='portarun.onnx-node-suite']/testcase").get("name") == "onnxruntime:cpu"
    text = write_markdown(document, tmp_path / "r.md").read_text()
    assert text.startswith("# portarun conformance: FAILED")
    assert "| perturb:cpu | builtin:mlp | fp32 | FAIL |" in text and "fc1" in text
    assert "## ONNX node suite" in text and "Utilization 0.6" in text
    png = plot_report(document, tmp_path / "r.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_baseline_flags_parity_latency_and_cost_regressions(document):
    assert find_regressions(document, document) == []
    old = copy.deepcopy(document)
    cell = next(r for r in old["results"] if r["target"] == "onnxruntime:cpu" and r["precision"] == "fp32")
    cell["performance"]["median_latency"]["value"] /= 2  # it used to be twice as fast
    cell["cost"]["usd_per_million"]["value"] /= 1.1  # and 10 % cheaper: under the threshold
    failing = next(r for r in old["results"] if r["status"] == "fail")
    failing["status"] = "pass"
    old["node_suite"]["targets"]["onnxruntime:cpu"]["passed"] = 9
    found = {(r["case"], r["target"], r["kind"]) for r in find_regressions(document, old, threshold=0.25)}
    assert found == {("builtin:mlp", "onnxruntime:cpu", "latency"), ("builtin:mlp", "perturb:cpu", "parity"),
                     ("onnx-node-suite", "onnxruntime:cpu", "parity")}  # 9 node cases passed before, 7 now
    found = {(r["case"], r["kind"]) for r in find_regressions(document, old, threshold=0.05)}
    assert ("builtin:mlp", "cost") in found
    old["node_suite"]["targets"]["onnxruntime:cpu"]["total"] = 11  # another suite: counts are not comparable
    assert ("onnx-node-suite", "parity") not in {(r["case"], r["kind"]) for r in find_regressions(document, old)}


def test_baseline_of_another_schema_is_refused(tmp_path):
    from portarun import UsageError

    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": "portarun.conformance-report/0", "results": []}))
    with pytest.raises(UsageError, match="regenerate"):
        load_report(path)


def test_plot_survives_zero_cost_exact_and_unmeasured_cells(document, tmp_path):
    """A zero-cost cell (log scale impossible), exact agreement (1 - cosine = 0) and a report with no
    measured cell each still give a PNG: one row per model, never 'Data cannot be log-scaled'."""
    import copy

    zero = copy.deepcopy(document)
    for entry in zero["results"]:
        if entry.get("cost"):
            entry["cost"]["usd_per_million"]["value"] = 0.0
        if entry.get("metrics"):
            entry["metrics"]["cosine"]["value"] = 1.0
    assert plot_report(zero, tmp_path / "zero.png").read_bytes()[:4] == b"\x89PNG"
    empty = copy.deepcopy(document)
    empty["results"] = []
    assert plot_report(empty, tmp_path / "empty.png").read_bytes()[:4] == b"\x89PNG"
