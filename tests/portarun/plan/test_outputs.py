"""The plan document follows its schema; Markdown and the plot are written (zero-cost cells included)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from portarun import UsageError
from portarun.plan import Accuracy, Candidate, Constraints, Source, make_plan
from portarun.plan.cascade import CascadeEval, run_cascade
from portarun.plan.document import build_document, to_json, validate, write_json
from portarun.plan.markdown import render
from portarun.plan.plot import plot_plan


def table():
    return [
        Candidate("onnxruntime:cpu", "fp32", 1, model="m", hardware="xeon", accuracy=Accuracy(cosine=1.0, top1=1.0),
                  latency_median_ms=4.0, latency_p99_ms=5.0, items_per_s=250.0, tokens_per_s=32000.0,
                  usd_per_1m=0.0, usd_per_hour=0.0),  # a free price: must not break the plot
        Candidate("openvino:cpu", "int8", 4, model="m", hardware="epyc", accuracy=Accuracy(cosine=0.99, top1=0.9),
                  latency_median_ms=6.0, latency_p99_ms=8.0, items_per_s=600.0, tokens_per_s=76800.0,
                  usd_per_1m=0.2, usd_per_hour=0.05,
                  source=Source("imported", "AMD EPYC 9654", "2026-11-30T10:00:00+00:00", "epyc.json")),
        Candidate("xla:cpu", "fp32", 1, model="m", hardware="xeon", accuracy=Accuracy(cosine=1.0, top1=1.0),
                  latency_median_ms=float("nan"), latency_p99_ms=40.0, items_per_s=30.0, tokens_per_s=3840.0,
                  usd_per_1m=1.5, usd_per_hour=0.2),
        Candidate("reference:cpu", "fp32", 1, model="m", error="timed out"),
    ]


def test_document_validates_and_marks_recommendation_and_sources(tmp_path):
    plan = make_plan(table(), Constraints(floors={"cosine": 0.999}, p99_ms=20.0), requests_per_s=1000.0)
    small = np.array([[0.9, 0.1], [0.6, 0.4]])
    cascade = run_cascade(CascadeEval(small, small, np.ones(2), np.ones(2), small_usd_per_1m=0.0,
                                      large_usd_per_1m=1.0), sweep_metric="max_prob", floor=0.5)
    document = build_document(plan, model="m", seconds=1.0, cascade=("s.onnx", "l.onnx", cascade))
    path = write_json(document, tmp_path / "plan.json")
    loaded = json.loads(path.read_text())
    validate(loaded)
    rec = [c for c in loaded["candidates"] if c["recommended"]]
    assert len(rec) == 1 and rec[0]["target"] == "onnxruntime:cpu" and rec[0]["usd_per_1m_tokens"] == 0.0
    assert loaded["recommended"]["id"] == rec[0]["id"]
    imported = next(c for c in loaded["candidates"] if c["source"]["kind"] == "imported")
    assert imported["source"]["report"] == "epyc.json" and imported["reasons"][0]["kind"] == "floor"
    assert loaded["replicas"]["replicas"] == 4  # ceil(1000 / 250)
    assert loaded["candidates"][2]["latency_ms"]["median"] is None  # NaN is not JSON
    broken = dict(loaded, candidates=[dict(loaded["candidates"][0], feasible="yes")])
    with pytest.raises(UsageError, match="candidates/0/feasible"):
        validate(broken)


def test_markdown_and_plot_are_written(tmp_path):
    plan = make_plan(table(), Constraints(floors={"cosine": 0.999}, p99_ms=20.0))
    document = json.loads(to_json(build_document(plan, model="m")))
    text = render(document)
    assert "RECOMMENDED" in text and "cosine 0.99 < floor 0.999" in text and "AMD EPYC 9654 @ 2026-11-30" in text
    # the other feasible-priced options miss the floor (openvino) or the SLO (xla): no migration option
    assert "migration option: none" in text
    relaxed = make_plan(table(), Constraints(floors={"cosine": 0.999}, p99_ms=50.0))
    assert "migration option: #1 xla:cpu fp32 b1" in render(json.loads(to_json(build_document(relaxed, model="m"))))
    out = plot_plan(document, tmp_path / "plan.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    nothing = make_plan(table(), Constraints(floors={"cosine": 1.1}))
    text = render(build_document(nothing, model="m"))
    assert "no feasible candidate; closest misses" in text
    plot_plan(json.loads(to_json(build_document(nothing, model="m"))),
              tmp_path / "none.png")
