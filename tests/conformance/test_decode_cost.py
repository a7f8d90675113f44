"""The report's $/1M tokens table for a decoder: per CPU backend x {fp32, int8-weight, int4-weight}, priced
from the decode tokens/s measured in the same run, with the price's source and date; and `portarun plan
--from` reading those same numbers. Real backends and a real (tiny) built-in decoder; no timed assertion."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import portarun
from portarun.cost import CostAssumptions
from portarun.plan import Constraints, make_plan
from portarun.plan.imports import import_report

PRECISIONS = ("fp32", "int8-weight", "int4-weight")


def _available(target: str) -> bool:
    try:
        portarun.get_backend(target.split(":")[0]).devices()
        return True
    except portarun.PortarunError:
        return False


TARGETS = [t for t in ("onnxruntime:cpu", "openvino:cpu") if _available(t)]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One real conformance run (in-process) of builtin:mlp at fp32 with decoder-tiny's decode-cost section."""
    from portarun_conformance import ConformanceConfig, run

    if not TARGETS:
        pytest.skip("no CPU backend available")
    out = tmp_path_factory.mktemp("decode-cost")
    done = run(ConformanceConfig(models=["builtin:mlp"], targets=TARGETS, precisions=["fp32"], suite="models",
                                 runs=2, warmup=1, isolate=False, localize=False, out_dir=str(out),
                                 json_path=str(out / "report.json"), decode_cost=["decoder-tiny"],
                                 decode_new_tokens=6))
    return done, out / "report.json"


def _section(report):
    done, _ = report
    (section,) = done.document["decode_cost"]
    return section


def test_every_cpu_backend_has_fp32_int8_and_int4_weight_rows(report):
    section = _section(report)
    assert section["model"] == "decoder-tiny"
    cells = {(r["target"], r["precision"]) for r in section["rows"]}
    # -p fp32 narrows the matrix only: the table compares the three weight precisions
    assert cells == {(t, p) for t in TARGETS for p in PRECISIONS}


@pytest.fixture(scope="module")
def full_section():
    from portarun_conformance.decode_cost import measure_decode_costs

    if not TARGETS:
        pytest.skip("no CPU backend available")
    return measure_decode_costs("decoder-tiny", TARGETS, PRECISIONS, new_tokens=6, repeats=1)


def test_the_table_has_a_column_per_precision_and_a_row_per_backend(full_section):
    from portarun_conformance.decode_cost import decode_cost_markdown

    rows = full_section["rows"]
    assert {(r["target"], r["precision"]) for r in rows} == {(t, p) for t in TARGETS for p in PRECISIONS}
    assert all(not r["error"] for r in rows), [r["error"] for r in rows]
    lines = decode_cost_markdown(full_section)
    header = next(line for line in lines if line.startswith("| target | fp32"))
    assert [c.strip() for c in header.strip("|").split("|")] == \
        ["target"] + [f"{p} $/1M (tok/s)" for p in PRECISIONS]
    for target in TARGETS:
        assert any(line.startswith(f"| {target} | $") for line in lines), target
    assert any(line.startswith("- price: cloud:") and "dated" in line for line in lines), lines


def test_cost_is_the_hourly_price_over_the_measured_decode_rate(full_section):
    for r in full_section["rows"]:
        assert r["decode_tokens_per_s"] > 0 and r["usd_per_hour"] > 0
        assert math.isclose(r["usd_per_million_tokens"], r["usd_per_hour"] / (r["decode_tokens_per_s"] * 3600) * 1e6,
                            rel_tol=1e-12)
        # a CPU target is priced at the sourced $/vCPU-hour, and says where and when that price was read
        assert r["price_basis"] == "cloud" and "vCPU" in r["price_source"] and r["price_date"]
        assert r["hardware_profile"]["name"] == "local"


def test_quantized_rows_say_how_far_they_are_from_fp32(full_section):
    by = {(r["target"], r["precision"]): r for r in full_section["rows"]}
    for target in TARGETS:
        assert by[(target, "fp32")]["tokens_equal_to_fp32"] == 1.0
        assert by[(target, "fp32")]["logits_cosine_to_fp32"] == pytest.approx(1.0)
        assert by[(target, "fp32")]["next_token_agreement"] == 1.0
        for precision in PRECISIONS[1:]:
            row = by[(target, precision)]
            assert 0.0 <= row["tokens_equal_to_fp32"] <= 1.0 and 0.5 < row["logits_cosine_to_fp32"] <= 1.0 + 1e-9
            # teacher forcing judges each new position on its own, with its interval around it
            low, high = row["next_token_agreement_ci95"]
            assert 0.0 <= low <= row["next_token_agreement"] <= high <= 1.0
            assert row["weight_bytes"] < by[(target, "fp32")]["weight_bytes"]
            assert row["bytes_per_step"] < by[(target, "fp32")]["bytes_per_step"]
        assert by[(target, "int4-weight")]["bytes_per_step"] < by[(target, "int8-weight")]["bytes_per_step"]


def test_the_report_with_the_section_follows_the_schema_and_its_markdown_shows_it(report):
    from portarun_conformance.report import validate

    done, path = report
    validate(json.loads(path.read_text()))
    assert "$/1M tokens: decoder-tiny decode" in done.paths["markdown"].read_text()


def test_plan_from_the_report_reads_the_same_decode_numbers(report):
    done, path = report
    section = _section(report)
    assumptions = CostAssumptions(**done.document["hardware"]["assumptions"])
    decoders = [c for c in import_report(path, assumptions=assumptions) if c.kind == "decoder"]
    assert len(decoders) == len(section["rows"])
    rows = {(r["target"], r["precision"]): r for r in section["rows"]}
    for candidate in decoders:
        row = rows[(candidate.target, candidate.precision)]
        assert candidate.tokens_per_s == row["decode_tokens_per_s"] and candidate.tpot_ms == row["tpot_median_ms"]
        # re-priced from the embedded profile under the report's own assumptions: the report's price
        assert math.isclose(candidate.usd_per_1m, row["usd_per_million_tokens"], rel_tol=1e-9)


def test_plan_over_the_decode_table_picks_the_cheapest_precision_that_meets_the_floor(full_section, tmp_path):
    """The section's real rows with their decode rates replaced (a fake for the plumbing, so the choice is
    certain, which a real run on 2 shared cores cannot promise): int4 on the first target the fastest but
    under the floor, its int8 next. The plan must skip int4 and pick int8, priced from the rate."""
    from portarun_conformance.report import build_report
    from portarun_conformance.harness import MatrixResult

    section = json.loads(json.dumps(full_section))
    first = TARGETS[0]
    for row in section["rows"]:
        row["decode_tokens_per_s"] = {"int4-weight": 400.0, "int8-weight": 200.0}.get(row["precision"], 100.0) \
            if row["target"] == first else 50.0
        row["next_token_agreement"] = 0.5 if row["precision"] == "int4-weight" else 1.0  # what plan judges top1 on
    document = build_report(MatrixResult([]), hardware=None, assumptions=CostAssumptions())
    document["decode_cost"] = [section]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(document, default=str))
    candidates = import_report(path, assumptions=CostAssumptions())
    plan = make_plan(candidates, Constraints(floors={"top1": 0.9}))
    chosen = plan.recommended.candidate
    feasible = [c for c in candidates if c.accuracy.top1 >= 0.9]
    assert chosen.usd_per_1m == min(c.usd_per_1m for c in feasible)
    assert (chosen.target, chosen.precision) == (first, "int8-weight")
    assert math.isclose(chosen.usd_per_1m, chosen.usd_per_hour / (200.0 * 3600) * 1e6)
    assert any(c.precision == "int4-weight" and c.usd_per_1m < chosen.usd_per_1m for c in candidates)


def test_a_decoder_with_a_decode_table_is_planned_on_it_not_on_its_prefill_cells(full_section, tmp_path):
    """A report whose matrix also holds the decoder's own cells (one prefill pass each, priced per prompt
    token) plans that decoder on its decode rows only; other models' cells stay candidates."""
    from portarun_conformance import ConformanceConfig, run

    path = tmp_path / "report.json"
    run(ConformanceConfig(models=["builtin:decoder-tiny", "builtin:mlp"], targets=TARGETS[:1], precisions=["fp32"],
                          suite="models", runs=2, warmup=1, isolate=False, localize=False, out_dir=str(tmp_path),
                          json_path=str(path)))
    document = json.loads(path.read_text())
    assert {e["case"] for e in document["results"]} == {"builtin:decoder-tiny", "builtin:mlp"}
    document["decode_cost"] = [full_section]
    path.write_text(json.dumps(document, default=str))
    models = {c.model: c.kind for c in import_report(path, assumptions=CostAssumptions())}
    assert models == {"builtin:mlp": "encoder", "decoder-tiny (decode)": "decoder"}


def test_plan_from_model_keeps_only_that_decoders_rows(report):
    """`portarun plan --from R --from-model decoder-tiny`: the report's other models (mlp) are left out,
    and the recommendation is the cheapest decode row that meets the floor."""
    from portarun.plan.run import PlanConfig, run_plan

    _, path = report
    run = run_plan(PlanConfig(Constraints(floors={"cosine": 0.9}), CostAssumptions(), reports=[str(path)],
                              report_models=["builtin:decoder-tiny"]))
    judged = run.plan.ranked
    assert judged and {j.candidate.model for j in judged} == {"decoder-tiny (decode)"}
    feasible = [j.candidate for j in judged if j.feasible]
    assert run.plan.recommended.candidate.usd_per_1m == min(c.usd_per_1m for c in feasible)


def test_an_unknown_decoder_is_refused_before_the_run():
    from portarun_conformance import ConformanceConfig, run

    with pytest.raises(portarun.UsageError, match="decoder-smol"):
        run(ConformanceConfig(models=["builtin:mlp"], targets=["onnxruntime:cpu"], suite="models",
                              decode_cost=["decoder-smol"], json_path="-", isolate=False))


def test_one_configuration_that_fails_to_generate_leaves_the_others_measured():
    """A fake for the plumbing: a real decoder-tiny executable wrapped so that its runs fail after the
    prefill check, as a backend's runtime error would; the other configuration is still measured."""
    from portarun_conformance.decode_cost import DecodeCostRow, _speeds

    class FailsToGenerate:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def run(self, feeds, *, check=True, tails=None):
            raise portarun.RunError("the backend broke mid-generation", backend="fake")

    model = portarun.models.build("decoder-tiny")
    with portarun.compile(model, "onnxruntime:cpu", "fp32") as good, \
            portarun.compile(model, "onnxruntime:cpu", "fp32") as inner:
        executables = {("onnxruntime:cpu", "fp32"): good, ("broken:cpu", "fp32"): FailsToGenerate(inner)}
        rows = {key: DecodeCostRow(*key) for key in executables}
        speeds = _speeds(executables, rows, np.array([[1, 2, 3]], dtype=np.int64), 4, 1)
    assert set(speeds) == {"onnxruntime:cpu fp32"}
    assert rows[("broken:cpu", "fp32")].error.startswith("generate: ") and not rows[("onnxruntime:cpu", "fp32")].error


def test_plan_judges_a_decode_row_on_its_teacher_forced_agreement(report, tmp_path):
    """top1 for the plan is next-token agreement over the run's new tokens (one flipped free-running token
    no longer fails a precision); a report from before that field falls back to greedy equality."""
    _, path = report
    document = json.loads(path.read_text())
    (section,) = document["decode_cost"]
    rows = {(r["target"], r["precision"]): r for r in section["rows"]}

    def decoders(report_path):
        return [c for c in import_report(report_path, assumptions=CostAssumptions()) if c.kind == "decoder"]

    judged = decoders(path)
    assert len(judged) == len(rows)
    for candidate in judged:
        row = rows[(candidate.target, candidate.precision)]
        assert candidate.accuracy.top1 == row["next_token_agreement"] is not None
        assert candidate.accuracy.samples == section["new_tokens"]
    for row in section["rows"]:
        row.pop("next_token_agreement")
    older = tmp_path / "older.json"
    older.write_text(json.dumps(document))
    for candidate in decoders(older):
        assert candidate.accuracy.top1 == rows[(candidate.target, candidate.precision)]["tokens_equal_to_fp32"]
        assert candidate.accuracy.samples == 1
