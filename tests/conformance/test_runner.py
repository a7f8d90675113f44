"""portarun_conformance.run: one conformance run as a library call (config in, report out)."""

from __future__ import annotations

import json

import pytest

from portarun import UsageError
from portarun_conformance import ConformanceConfig, run
from portarun_conformance.report import validate


def test_run_writes_the_reports_and_reports_progress(tmp_path):
    events = []
    config = ConformanceConfig(models=["builtin:mlp"], targets=["onnxruntime:cpu"], precisions=["fp32", "bf16"],
                               suite="models", runs=2, warmup=0, isolate=False, out_dir=str(tmp_path))
    report = run(config, progress=events.append)
    assert report.passed and bool(report)
    assert report.plot_error is None and set(report.paths) == {"json", "junit", "markdown", "plot"}
    assert json.loads(report.paths["json"].read_text())["summary"] == report.document["summary"]
    validate(report.document)
    assert [(e.kind, e.done, e.total) for e in events] == [("cell", 1, 2), ("cell", 2, 2)]
    assert {e.result.precision for e in events} == {"fp32", "bf16"}
    assert report.regressions == [] and report.seconds > 0


def test_json_dash_writes_no_json_file(tmp_path):
    config = ConformanceConfig(models=["builtin:mlp"], targets=["onnxruntime:cpu"], precisions=["fp32"],
                               suite="models", runs=1, warmup=0, isolate=False, out_dir=str(tmp_path),
                               json_path="-", plot_path="-")
    report = run(config)
    assert set(report.paths) == {"junit", "markdown"}
    assert not (tmp_path / "report.json").exists() and report.document["results"][0]["status"] == "pass"


def test_unknown_suite_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown suite 'everything'"):
        ConformanceConfig(suite="everything")
