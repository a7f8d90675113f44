"""Cascade arithmetic on a hand-made eval set: escalation rate, accuracy, p95, blended cost, sweep."""

from __future__ import annotations

import numpy as np
import pytest

from portarun import UsageError
from portarun.plan.cascade import CascadeEval, EscalationRule, probabilities, run_cascade, scores

# 4 queries, 2 classes; labels 0 1 0 1
SMALL = np.array([[0.9, 0.1],    # confident, right
                  [0.6, 0.4],    # unsure, wrong
                  [0.2, 0.8],    # confident, wrong
                  [0.45, 0.55]])  # unsure, right
LARGE = np.array([[0.8, 0.2], [0.1, 0.9], [0.7, 0.3], [0.3, 0.7]])  # always right
LABELS = np.array([0, 1, 0, 1])


def data(**kw):
    return CascadeEval(SMALL, LARGE, small_latency_ms=np.array([1.0, 1.0, 1.0, 1.0]),
                       large_latency_ms=np.array([10.0, 20.0, 30.0, 40.0]), labels=LABELS,
                       small_usd_per_1m=1.0, large_usd_per_1m=10.0, **kw)


def test_one_rule_by_hand():
    result = run_cascade(data(), rule=EscalationRule.parse("max_prob<0.7"), floor=0.7)
    point = result.points[0]
    # escalated: queries 1 (0.6) and 3 (0.55) -> p = 0.5; answers 0,1,1,1 -> 3/4 right
    assert point.escalation_rate == 0.5 and point.accuracy == 0.75
    # latencies 1, 21, 1, 41 -> nearest-rank p95 of 4 values is the largest
    assert point.p95_ms == 41.0
    assert point.usd_per_1m == pytest.approx(1.0 + 0.5 * 10.0)
    assert point.meets_floor and result.chosen is point
    assert (result.small.accuracy, result.large.accuracy) == (0.5, 1.0)
    assert (result.small.usd_per_1m, result.large.usd_per_1m) == (1.0, 10.0)


def test_sweep_picks_the_cheapest_threshold_meeting_the_floor():
    result = run_cascade(data(), sweep_metric="max_prob", floor=0.75)
    by_rate = {p.escalation_rate: p.accuracy for p in result.points}
    # thresholds 0.55, 0.6, 0.8, 0.9, past 0.9 -> escalate 0, 1, 2, 3, 4 queries
    assert by_rate == {0.0: 0.5, 0.25: 0.5, 0.5: 0.75, 0.75: 1.0, 1.0: 1.0}
    assert result.chosen.escalation_rate == 0.5 and result.chosen.usd_per_1m == pytest.approx(6.0)
    strict = run_cascade(data(), sweep_metric="max_prob", floor=1.0)
    assert strict.chosen.escalation_rate == 0.75 and strict.chosen.usd_per_1m == pytest.approx(8.5)
    assert run_cascade(data(), sweep_metric="max_prob", floor=1.01).chosen is None


def test_margin_and_entropy_rules():
    probs = probabilities(SMALL)
    assert np.allclose(scores(probs, "margin"), [0.8, 0.2, 0.6, 0.1])
    entropy = scores(probs, "entropy")
    assert entropy[3] > entropy[1] > entropy[2] > entropy[0]
    point = run_cascade(data(), rule=EscalationRule.parse("entropy>0.6"), floor=None).points[0]
    # H(0.6,0.4)=0.673, H(0.45,0.55)=0.688 escalate; H(0.8,0.2)=0.500 does not
    assert point.escalation_rate == 0.5
    logits = np.log(SMALL)  # not probabilities: softmax recovers them
    assert np.allclose(probabilities(logits), SMALL)


def test_without_labels_the_large_model_is_the_truth_and_bad_input_is_a_usage_error():
    result = run_cascade(CascadeEval(SMALL, LARGE, np.ones(4), np.ones(4)), rule=EscalationRule.parse("margin<0.5"))
    assert result.metric == "top1 vs large" and result.large.accuracy == 1.0 and result.notes
    with pytest.raises(UsageError):
        EscalationRule.parse("confidence<0.5")
    with pytest.raises(UsageError):
        CascadeEval(SMALL, LARGE[:3], np.ones(4), np.ones(4))
