"""Judging candidates: a failing plan stops at its worst samples, a passing one is measured on all of them,
and every decision equals the one a full measurement makes.

The candidates here are a plumbing fake: ``run(plan, samples)`` adds noise of the plan's size to each
sample's float output (what a quantized model would compute is beside the point: which samples get run,
and what is decided from them, is the point)."""

from __future__ import annotations

import numpy as np
import pytest

from portarun.quantize.accuracy import AccuracyFloor, Reference, measure
from portarun.quantize.judge import EARLY_SAMPLES, STAGES, Judge

COUNT = 24


def _world(seed=0):
    rng = np.random.default_rng(seed)
    samples = [{"index": np.array([i])} for i in range(COUNT)]
    reference = [{"y": rng.standard_normal((1, 50)).astype(np.float32)} for _ in range(COUNT)]
    bad = {3, 17}  # the samples a plan's error hits hardest

    def outputs(plan, sample):
        i = int(sample["index"][0])
        scale = float(plan["noise"]) * (8.0 if i in bad else 1.0)
        noise = np.random.default_rng(1000 + i).standard_normal((1, 50)).astype(np.float32)
        return {"y": reference[i]["y"] + scale * noise}

    ran: list[int] = []

    def run(plan, chosen):
        ran.extend(int(s["index"][0]) for s in chosen)
        return [outputs(plan, s) for s in chosen]

    return samples, reference, run, ran, outputs


def test_a_failing_plan_stops_after_its_worst_samples_and_decides_as_a_full_measure():
    samples, reference, run, ran, outputs = _world()
    floor = AccuracyFloor(cosine=0.99)
    judge = Judge(run, samples, reference, floor)
    decided = set()
    for noise in (0.01, 0.05, 0.2, 0.03, 0.3, 0.001):
        plan = {"noise": noise}
        ran.clear()
        got = judge(plan)
        full = measure([outputs(plan, s) for s in samples], reference, floor)
        assert got.passed == full.passed
        decided.add(full.passed)
        if full.passed:  # measured on every sample, in order: the same numbers as a full measure
            assert sorted(ran) == list(range(COUNT)) and got.samples == COUNT
            assert got.cosine_min == pytest.approx(full.cosine_min, abs=1e-12)
            assert got.cosine_mean == pytest.approx(full.cosine_mean, abs=1e-12)
        else:
            assert got.samples == len(ran) and len(ran) in STAGES and got.failures
    assert decided == {True, False}
    # the bad samples came out worst, so the later failing plans ran them first
    ran.clear()
    judge({"noise": 0.3})
    assert {3, 17} <= set(ran[:EARLY_SAMPLES])


@pytest.mark.parametrize("floor", [AccuracyFloor(mean_abs=0.01), AccuracyFloor(cosine=0.99, mean_abs=1.0)])
def test_a_floor_on_an_average_runs_every_sample(floor):
    samples, reference, run, ran, outputs = _world()
    judge = Judge(run, samples, reference, floor)
    got = judge({"noise": 0.5})
    assert not got.passed and sorted(ran) == list(range(COUNT)) and got.samples == COUNT


def test_labels_run_every_sample():
    samples, reference, run, ran, _ = _world()
    labels = [int(np.argmax(r["y"])) for r in reference]
    judge = Judge(run, samples, reference, AccuracyFloor(cosine=0.99), labels=labels)
    got = judge({"noise": 0.5})
    assert sorted(ran) == list(range(COUNT)) and got.exact_match is not None


def test_a_limit_runs_the_first_samples_only():
    samples, reference, run, ran, _ = _world()
    judge = Judge(run, samples, reference, AccuracyFloor(cosine=0.99))
    got = judge({"noise": 0.5}, limit=5)
    assert ran == [0, 1, 2, 3, 4] and got.samples == 5


def test_prepared_reference_measures_like_the_plain_list():
    rng = np.random.default_rng(3)
    reference = [{"logits": rng.standard_normal((1, 4, 40000)).astype(np.float32),
                  "other": rng.standard_normal((2, 3)).astype(np.float32),
                  "ids": np.arange(3)} for _ in range(3)]
    got = [{k: (v + 0.05 * rng.standard_normal(v.shape)).astype(v.dtype) if v.dtype.kind == "f" else v
            for k, v in r.items()} for r in reference]
    floor = AccuracyFloor(cosine=0.5, top1=0.0, next_token=0.0)
    a, b = measure(got, reference, floor), measure(got, Reference(reference), floor)
    assert a.to_dict() == b.to_dict()
    # against a direct float64 computation (the chunked sums may differ in the last bits only)
    cosines, maxes = [], []
    for g, r in zip(got, reference):
        for name in ("logits", "other"):
            x, y = g[name].astype(np.float64).ravel(), r[name].astype(np.float64).ravel()
            cosines.append(x @ y / np.sqrt(x @ x) / np.sqrt(y @ y))
            maxes.append(np.abs(x - y).max())
    assert a.cosine_min == pytest.approx(min(cosines), abs=1e-12)
    assert a.cosine_mean == pytest.approx(np.mean(cosines), abs=1e-12)
    assert a.max_abs == pytest.approx(max(maxes), abs=1e-12)
    same = measure(reference, Reference(reference), AccuracyFloor(cosine=1.0, max_abs=0.0))
    assert same.passed and same.nmse == 0.0
