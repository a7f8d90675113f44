"""`portarun plan` end to end on built-ins over the CPU targets, --from reports, and a cascade."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import portarun
from portarun import models
from portarun.cli import main
from portarun.plan.document import validate


def plan(*args: str):
    return CliRunner().invoke(main, ["plan", *args])


def cpu_targets() -> list[str]:
    found = {str(t) for t in portarun.available_targets()}
    return [t for t in ("onnxruntime:cpu", "openvino:cpu", "xla:cpu") if t in found]


@pytest.fixture(scope="module")
def encoder_plan(tmp_path_factory):
    out = tmp_path_factory.mktemp("encoder")
    targets = [a for t in cpu_targets() for a in ("-t", t)]
    result = plan("builtin:mlp", *targets, "-p", "fp32", "-p", "int8", "--batch", "1,2", "--runs", "3",
                  "--warmup", "1", "--slo-p99-ms", "1000", "--floor", "cosine=0.99", "--requests-per-s", "5000",
                  "--json", str(out / "plan.json"), "--markdown", str(out / "plan.md"), "--plot", str(out / "plan.png"))
    return result, out


def test_encoder_plan_over_the_cpu_targets(encoder_plan):
    result, out = encoder_plan
    assert result.exit_code == 0, result.output
    document = json.loads((out / "plan.json").read_text())
    validate(document)
    cells = document["candidates"]
    assert len(cells) == len(cpu_targets()) * 2 * 2
    assert {(c["target"], c["precision"], c["batch"]) for c in cells} == {
        (t, p, b) for t in cpu_targets() for p in ("fp32", "int8") for b in (1, 2)}
    assert sum(c["recommended"] for c in cells) == 1 and cells[0]["recommended"]
    feasible = [c for c in cells if c["feasible"]]
    assert [c["usd_per_1m_tokens"] for c in feasible] == sorted(c["usd_per_1m_tokens"] for c in feasible)
    for c in cells:
        assert c["source"]["kind"] == "measured" and c["unit"] == "items"  # the MLP has no sequence axis
        assert c["accuracy"]["samples"] == 8 and c["latency_ms"]["p99"] > 0
        assert c["feasible"] == (not c["reasons"])
        if c["precision"] == "fp32":
            assert c["accuracy"]["cosine"] > 0.99999
    rec = cells[0]
    assert document["replicas"]["replicas"] == max(1, int(np.ceil(5000 / rec["items_per_s"] - 1e-9)))
    assert "RECOMMENDED" in (out / "plan.md").read_text()
    assert (out / "plan.png").read_bytes()[:4] == b"\x89PNG"
    assert "recommended: #0" in result.output


def test_decoder_plan_measures_ttft_tpot_and_the_kv_cache(tmp_path):
    targets = [a for t in cpu_targets()[:2] for a in ("-t", t)]
    result = plan("builtin:decoder-tiny", *targets, "-p", "fp32", "-p", "int8-weight", "--batch", "1,2",
                  "--prompt-tokens", "4", "--output-tokens", "4", "--samples", "4", "--ttft-ms", "10000",
                  "--tpot-ms", "10000", "--floor", "top1=0.5", "--json", str(tmp_path / "d.json"))
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "d.json").read_text())
    validate(document)
    for c in document["candidates"]:
        assert c["kind"] == "decoder" and c["ttft_ms"] > 0 and c["tpot_ms"] > 0 and c["tokens_per_s"] > 0
        # decoder-tiny: 2 layers x (key, value), 2 kv heads, head_dim 16, fp32, prompt 4 + output 4 positions
        assert c["kv_cache_bytes"] == 4 * 2 * 16 * 4 * c["batch"] * 8
        assert c["required_memory_bytes"] == c["weight_bytes"] + c["kv_cache_bytes"]
        if c["precision"] == "fp32":
            assert c["accuracy"]["top1"] == 1.0  # the same greedy tokens as the reference
    assert "TTFT / TPOT ms" in result.output


def test_infeasible_plans_exit_1_with_the_closest_misses(encoder_plan, tmp_path):
    _, out = encoder_plan
    result = plan("--from", str(out / "plan.json"), "--floor", "cosine=1.5", "--json", str(tmp_path / "none.json"))
    assert result.exit_code == 1, result.output
    assert "no feasible candidate; closest misses" in result.output
    document = json.loads((tmp_path / "none.json").read_text())
    assert document["recommended"] is None and len(document["closest_misses"]) == 3
    assert all(c["source"]["kind"] == "imported" for c in document["candidates"])
    assert plan("builtin:mlp", "--slo-p99-ms", "5", "--ttft-ms", "5").exit_code == 2
    assert plan("builtin:mlp", "-t", "onnxruntime:cpu", "--floor", "bleu=0.3").exit_code == 2
    assert plan().exit_code == 2


def test_from_two_reports_on_two_hardware_profiles(tmp_path):
    from portarun_conformance import builtin_cases, run_matrix
    from portarun_conformance.report import attach_costs, build_report, write_json
    from portarun.cost import CostAssumptions

    matrix = run_matrix(builtin_cases(["mlp"]), ["onnxruntime:cpu"], ["fp32"], runs=3, warmup=1, isolate=False,
                        localize_failures=False)
    paths = []
    for profile, cpu in (("xeon-8480", "Intel Xeon Platinum 8480+"), ("epyc-9654", "AMD EPYC 9654")):
        attach_costs(matrix, profile, CostAssumptions())
        document = build_report(matrix, hardware=profile, assumptions=CostAssumptions())
        document["environment"]["cpu"] = cpu  # as if each had been made on that machine
        paths.append(str(write_json(document, tmp_path / f"{profile}.json")))
    result = plan("--from", paths[0], "--from", paths[1], "--floor", "cosine=0.999", "--json", "-")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    validate(document)
    assert {c["hardware"] for c in document["candidates"]} == {"xeon-8480", "epyc-9654"}
    assert {c["source"]["where"].split(" (")[0] for c in document["candidates"]} == {
        "Intel Xeon Platinum 8480+", "AMD EPYC 9654"}
    assert document["migration"] is not None  # the same cell on the other machine


def _classifier_pair(tmp_path):
    """A large MLP classifier (builtin mlp: 64-256-256-10) and a small student (64-256-10) that shares its
    first layer and whose head is fitted by least squares to the large model's logits: it agrees with
    the large model on most inputs, not all, so the cascade has work to do."""
    from onnx import numpy_helper

    large = models.build("mlp")
    small = models.build("mlp", layers=1, seed=1)
    teacher_weights = {t.name: numpy_helper.to_array(t) for t in large.proto.graph.initializer}
    x = np.random.default_rng(5).standard_normal((4096, 64)).astype(np.float32)
    with portarun.compile(large, "onnxruntime:cpu") as exe:
        teacher = exe.run({"x": x})["logits"]
    hidden = np.maximum(x @ teacher_weights["fc0.weight"].T + teacher_weights["fc0.bias"], 0)
    solution, *_ = np.linalg.lstsq(np.concatenate([hidden, np.ones((len(x), 1), np.float32)], 1), teacher, rcond=None)
    fitted = {"fc0.weight": teacher_weights["fc0.weight"], "fc0.bias": teacher_weights["fc0.bias"],
              "head.weight": solution[:-1].T.astype(np.float32), "head.bias": solution[-1].astype(np.float32)}
    for tensor in small.proto.graph.initializer:
        tensor.CopyFrom(numpy_helper.from_array(fitted[tensor.name], tensor.name))
    small.save(tmp_path / "small.onnx")
    large.save(tmp_path / "large.onnx")
    feeds = np.random.default_rng(9).standard_normal((64, 64)).astype(np.float32)
    with portarun.compile(large, "onnxruntime:cpu") as exe:
        labels = np.argmax(exe.run({"x": feeds})["logits"], axis=1)
    np.savez(tmp_path / "eval.npz", x=feeds)
    np.save(tmp_path / "labels.npy", labels)
    return [str(tmp_path / n) for n in ("small.onnx", "large.onnx", "eval.npz", "labels.npy")]


def test_cascade_sweep_picks_the_cheapest_threshold_meeting_the_floor(tmp_path):
    small, large, feeds, labels = _classifier_pair(tmp_path)
    common = ["--cascade", small, large, "-t", "onnxruntime:cpu", "--eval", feeds, "--labels", labels,
              "--price-per-hour", "1.0"]
    result = plan(*common, "--escalate-sweep", "--floor", "exact=0.95", "--json", str(tmp_path / "c.json"))
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "c.json").read_text())
    validate(document)
    cascade = document["cascade"]
    assert cascade["metric"] == "exact" and cascade["large"]["accuracy"] == 1.0  # labels are the large's answers
    chosen = cascade["chosen"]
    assert chosen["accuracy"] >= 0.95 and chosen["meets_floor"]
    c_small, c_large = cascade["small"]["usd_per_1m"], cascade["large"]["usd_per_1m"]
    assert chosen["usd_per_1m"] == pytest.approx(c_small + chosen["escalation_rate"] * c_large)
    cheaper_ok = [p for p in cascade["points"] if p["meets_floor"] and p["usd_per_1m"] < chosen["usd_per_1m"]]
    assert cheaper_ok == []
    assert 0 < cascade["small"]["accuracy"] < 1.0  # the student is imperfect: the cascade has work to do
    one = plan(*common, "--escalate", "max_prob<0.7", "--floor", "exact=0.5", "--json", "-")
    assert one.exit_code == 0, one.output
    assert [p["rule"] for p in json.loads(one.stdout)["cascade"]["points"]] == ["max_prob<0.7"]
    assert plan("--cascade", small, large).exit_code == 2  # needs a rule or a sweep


def test_user_eval_set_with_labels_gates_on_exact_match(tmp_path):
    _, large, feeds, labels = _classifier_pair(tmp_path)
    result = plan(large, "-t", "onnxruntime:cpu", "-p", "fp32", "-p", "int8", "--batch", "1", "--runs", "3",
                  "--eval", feeds, "--labels", labels, "--floor", "exact=0.999", "--json", "-")
    assert result.exit_code == 0, result.output
    cells = {c["precision"]: c for c in json.loads(result.stdout)["candidates"]}
    assert cells["fp32"]["accuracy"]["exact"] == 1.0 and cells["fp32"]["accuracy"]["samples"] == 64
    int8 = cells["int8"]
    assert int8["feasible"] == (int8["accuracy"]["exact"] >= 0.999)
    if not int8["feasible"]:
        assert int8["reasons"][0]["metric"] == "exact" and int8["reasons"][0]["limit"] == 0.999
    assert plan(large, "--labels", labels).exit_code == 2  # labels without --eval


def test_decoder_exact_match_against_token_labels(tmp_path):
    """--eval prompts + --labels token ids: exact is the fraction of greedy tokens equal to the labels."""
    prompts = np.random.default_rng(3).integers(0, 256, size=(4, 4)).astype(np.int64)
    with portarun.compile(models.build("decoder-tiny"), "onnxruntime:cpu") as exe:
        expected = portarun.generate(exe, prompts, 4).tokens
    labels = expected.copy()
    labels[0, :] = (labels[0, :] + 1) % 256  # one of four label rows is wrong on purpose
    np.savez(tmp_path / "prompts.npz", input_ids=prompts)
    np.save(tmp_path / "labels.npy", labels)
    result = plan("builtin:decoder-tiny", "-t", "onnxruntime:cpu", "-p", "fp32", "--batch", "1", "--prompt-tokens",
                  "4", "--output-tokens", "4", "--eval", str(tmp_path / "prompts.npz"), "--labels",
                  str(tmp_path / "labels.npy"), "--floor", "exact=0.7", "--json", "-")
    assert result.exit_code == 0, result.output
    cell = json.loads(result.stdout)["candidates"][0]
    assert cell["accuracy"]["exact"] == 0.75 and cell["accuracy"]["top1"] == 1.0
