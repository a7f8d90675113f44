"""--from: two conformance reports made on "different machines" (two hardware profiles) merged into one plan."""

from __future__ import annotations

import json

import pytest

from portarun import UsageError
from portarun.cost import CostAssumptions
from portarun.plan import Constraints, make_plan
from portarun.plan.document import build_document, to_json, validate
from portarun.plan.imports import import_report


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory):
    """Real conformance runs (portarun_conformance.run, in-process, 3 runs) of builtin:mlp on
    onnxruntime:cpu, priced as a Xeon share and as an EPYC share; the second is edited to say it was
    measured on an EPYC on another day, as if it came from another machine."""
    from portarun_conformance import ConformanceConfig, run
    from portarun_conformance.report import validate as validate_report

    out = tmp_path_factory.mktemp("reports")
    paths = []
    for profile, cpu, created in (("xeon-8480", None, None),
                                  ("epyc-9654", "AMD EPYC 9654 96-Core Processor", "2026-11-30T09:00:00+00:00")):
        path = out / f"{profile}.json"
        run(ConformanceConfig(models=["builtin:mlp"], targets=["onnxruntime:cpu"], precisions=["fp32", "int8"],
                              suite="models", hardware=profile, assumptions=CostAssumptions(kwh_price_usd=0.10),
                              runs=3, warmup=1, isolate=False, localize=False, out_dir=str(out / profile),
                              json_path=str(path)))
        document = json.loads(path.read_text())
        validate_report(document)
        if cpu:
            document["environment"]["cpu"], document["created"] = cpu, created
            path.write_text(json.dumps(document))
        paths.append(path)
    return paths


def test_two_reports_merge_into_one_plan(two_reports):
    assumptions = CostAssumptions(kwh_price_usd=0.06)
    candidates = [c for path in two_reports for c in import_report(path, assumptions=assumptions)]
    assert {c.hardware for c in candidates} == {"xeon-8480", "epyc-9654"}
    assert all(c.source.kind == "imported" for c in candidates)
    epyc = [c for c in candidates if c.hardware == "epyc-9654"]
    assert all(c.source.where.startswith("AMD EPYC 9654") and c.source.when.startswith("2026-11-30") for c in epyc)
    assert all(c.source.report == str(two_reports[1]) for c in epyc)
    for c in candidates:  # re-priced with this plan's $0.06/kWh from the embedded profile, not the report's $0.10
        assert c.cost["inputs"]["assumptions"]["kwh_price_usd"] == 0.06 and c.usd_per_1m > 0
        assert c.batch == 1 and c.accuracy.cosine is not None and c.latency_p99_ms is not None
    plan = make_plan(candidates, Constraints(floors={"cosine": 0.99}))
    document = json.loads(to_json(build_document(plan, model="builtin:mlp")))
    validate(document)
    assert plan.recommended is not None
    # the two machines run the same cells: the migration option is the other hardware profile
    assert plan.migration is not None and plan.migration.candidate.hardware != plan.recommended.candidate.hardware


def test_a_plan_can_be_imported_again_and_unknown_documents_are_refused(two_reports, tmp_path):
    candidates = import_report(two_reports[0], assumptions=CostAssumptions())
    plan = make_plan(candidates, Constraints())
    path = tmp_path / "plan.json"
    path.write_text(to_json(build_document(plan, model="builtin:mlp")))
    again = import_report(path, assumptions=CostAssumptions())
    assert [(c.target, c.precision, c.usd_per_1m) for c in again] == \
        [(j.candidate.target, j.candidate.precision, j.candidate.usd_per_1m) for j in plan.ranked]
    assert all(c.source.report == str(two_reports[0]) for c in again)  # still says where it was first measured
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something/9"}')
    with pytest.raises(UsageError, match="--from reads"):
        import_report(bad)


def test_a_bench_sweep_imports_with_latency_and_price_but_no_accuracy(tmp_path):
    from click.testing import CliRunner

    from portarun.cli import main

    path = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "builtin:mlp", "-t", "onnxruntime:cpu", "--batch", "1,2", "--runs",
                                       "3", "--price-per-hour", "3.6", "--json", str(path)])
    assert result.exit_code == 0, result.output
    candidates = import_report(path, assumptions=CostAssumptions())
    assert [(c.target, c.batch) for c in candidates] == [("onnxruntime:cpu", 1), ("onnxruntime:cpu", 2)]
    assert all(c.latency_p99_ms > 0 and c.usd_per_1m > 0 and c.source.when.endswith("(file time)")
               for c in candidates)
    plan = make_plan(candidates, Constraints(floors={"cosine": 0.99}))
    assert plan.recommended is None and plan.ranked[0].reasons[0].kind == "unmeasured"
