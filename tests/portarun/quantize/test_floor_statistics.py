"""The floor's statistics: decoders judged on >= 32 held-out prompts by next-token agreement with a
confidence interval; a user's evaluation set with labels judged by exact match."""

from __future__ import annotations

import numpy as np
import pytest

import portarun
from portarun.errors import UsageError
from portarun.quantize import AccuracyFloor, RandomCalibration
from portarun.quantize.accuracy import measure, wilson_interval


def test_wilson_interval_is_sound_at_the_edges():
    lo, hi = wilson_interval(32, 32)
    assert hi == 1.0 and 0.85 < lo < 0.92  # 32 of 32 agreeing still leaves room for ~10 % disagreement
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.2 < hi < 0.35
    narrow, wide = wilson_interval(90, 100), wilson_interval(9, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_next_token_agreement_counts_the_last_position():
    rng = np.random.default_rng(0)
    ref = [{"logits": rng.standard_normal((1, 5, 11)).astype(np.float32)} for _ in range(4)]
    got = [{"logits": r["logits"].copy()} for r in ref]
    got[0]["logits"][0, -1] = -got[0]["logits"][0, -1]  # sample 0's next token changes
    got[1]["logits"][0, 0] = -got[1]["logits"][0, 0]  # an earlier position: not the next token
    acc = measure(got, ref, AccuracyFloor(next_token=0.9))
    assert acc.next_token == pytest.approx(0.75) and not acc.passed
    assert acc.next_token_interval[0] < 0.75 < acc.next_token_interval[1]
    assert any("next token" in f for f in acc.failures)
    assert "next token 0.750 (95% CI" in acc.text()


def test_decoder_floor_is_judged_on_32_prompts_with_intervals():
    q = portarun.quantize(portarun.models.build("decoder-tiny"), "int8-weight",
                          dims={"batch": 1, "seq": 8, "past_seq": 0, "total_seq": 8})
    acc = q.report.accuracy
    assert acc.samples >= 32 and "32 other random samples" in q.report.validation
    assert acc.next_token is not None and acc.next_token_interval is not None
    assert acc.cosine_interval[0] <= acc.cosine_mean <= acc.cosine_interval[1]
    assert "next token" in q.summary() and "95% CI" in q.summary()


def test_user_eval_set_and_labels_give_an_exact_match_floor():
    mlp = portarun.models.build("mlp")
    eval_set = [portarun.random_feeds(mlp.inputs, seed=100 + i, dims={"batch": 1}) for i in range(12)]
    with portarun.compile(mlp, "onnxruntime:cpu", "fp32") as exe:
        outputs = [exe.run(sample) for sample in eval_set]
    name = mlp.outputs[0].name
    labels = [np.argmax(out[name], -1) for out in outputs]
    labels[0] = (labels[0] + 1) % outputs[0][name].shape[-1]  # one label the float model gets wrong too
    q = portarun.quantize(mlp, "int8-weight", calibration=RandomCalibration(4), eval=eval_set, labels=labels,
                          accuracy_floor="exact_match=0.8")
    acc = q.report.accuracy
    assert acc.float_exact_match == pytest.approx(11 / 12) and acc.exact_match is not None
    assert acc.exact_match_interval[0] <= acc.exact_match <= acc.exact_match_interval[1]
    assert q.floor_met == (acc.exact_match >= 0.8) and "exact match" in q.summary()
    with pytest.raises(UsageError, match="labels"):
        portarun.quantize(mlp, "int8-weight", eval=eval_set, labels=labels[:3])
    with pytest.raises(UsageError, match="exact_match floor needs labels"):
        portarun.quantize(mlp, "int8-weight", eval=eval_set, accuracy_floor="exact_match=0.5")


def test_progress_is_reported_while_searching():
    seen = []
    q = portarun.quantize("builtin:mlp", "int4-weight", accuracy_floor="cosine=0.9999",
                          progress=lambda stage, done, total: seen.append((stage, done, total)))
    stages = [stage for stage, _, _ in seen]
    assert stages[0] == "reference" and seen[-1] == ("check", 1, 1)
    if q.report.fallback_steps:  # a floor this high moves layers: the search reports each move
        assert "rank" in stages and "search" in stages
    assert all(0 <= done <= total for _, done, total in seen)
