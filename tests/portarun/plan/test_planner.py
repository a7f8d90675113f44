"""The pure planner on synthetic measurement tables, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from portarun import UsageError
from portarun.cost import CostAssumptions, HardwareProfile, Sourced
from portarun.plan import Accuracy, Candidate, Constraints, make_plan, parse_floor, price, reasons, replicas_for
from portarun.plan.memory import kv_cache_bytes
from portarun.plan.ranking import accuracy_value, pareto_front


def enc(target, precision, batch, *, cost, cosine=1.0, p99=10.0, hardware="cpu-a", items=100.0, **kw):
    return Candidate(target=target, precision=precision, batch=batch, hardware=hardware, usd_per_1m=cost,
                     accuracy=Accuracy(cosine=cosine, top1=kw.pop("top1", 1.0), max_abs=kw.pop("max_abs", None)), latency_median_ms=p99 * 0.8,
                     latency_p99_ms=p99, items_per_s=items, usd_per_hour=kw.pop("usd_per_hour", 1.0), **kw)


TABLE = [
    enc("onnxruntime:cpu", "fp32", 1, cost=4.0, cosine=1.0, p99=8.0),
    enc("onnxruntime:cpu", "int8", 1, cost=2.0, cosine=0.990, p99=5.0),  # misses the floor
    enc("openvino:cpu", "fp32", 8, cost=3.0, cosine=0.9999, p99=30.0),  # misses the SLO
    enc("openvino:cpu", "int8-weight", 1, cost=3.5, cosine=0.9995, p99=9.0),
    enc("xla:cpu", "fp32", 1, cost=5.0, cosine=1.0, p99=12.0),
]
LIMITS = Constraints(floors={"cosine": 0.999}, p99_ms=20.0)


def test_ranking_puts_feasible_first_by_cost_and_picks_a_migration_option():
    plan = make_plan(TABLE, LIMITS)
    order = [(j.candidate.target, j.candidate.precision, j.feasible) for j in plan.ranked]
    assert order[:3] == [("openvino:cpu", "int8-weight", True), ("onnxruntime:cpu", "fp32", True),
                         ("xla:cpu", "fp32", True)]
    assert {o[:2] for o in order[3:]} == {("onnxruntime:cpu", "int8"), ("openvino:cpu", "fp32")}
    assert plan.recommended.candidate.precision == "int8-weight"
    assert plan.migration.candidate.backend == "onnxruntime"  # cheapest feasible on another backend
    assert "$3.5 per 1M tokens" in plan.why and "next feasible" in plan.why and "1.14x" in plan.why


def test_each_infeasibility_reason_names_value_and_limit():
    floor_miss = reasons(TABLE[1], LIMITS)
    assert [(r.kind, r.metric, r.value, r.limit) for r in floor_miss] == [("floor", "cosine", 0.990, 0.999)]
    slo_miss = reasons(TABLE[2], LIMITS)
    assert [(r.kind, r.metric, r.value, r.limit) for r in slo_miss] == [("slo", "p99_ms", 30.0, 20.0)]
    both = reasons(enc("x:cpu", "int4-weight", 1, cost=1.0, cosine=0.9, p99=50.0), LIMITS)
    assert [r.kind for r in both] == ["floor", "slo"]
    unmeasured = reasons(TABLE[0], Constraints(floors={"exact": 0.98}))
    assert unmeasured[0].kind == "unmeasured" and "labels" in unmeasured[0].text
    error = reasons(Candidate("x:cpu", "fp32", 1, error="compile failed: no op Foo"), LIMITS)
    assert error[0].kind == "error" and "Foo" in error[0].text
    ceiling = reasons(enc("x:cpu", "int8", 1, cost=1.0, max_abs=0.05), Constraints(floors={"max_abs": 0.01}))
    assert (ceiling[0].kind, ceiling[0].value, ceiling[0].limit) == ("floor", 0.05, 0.01)


def test_decoder_slo_checks_ttft_and_tpot():
    dec = Candidate("onnxruntime:cpu", "fp32", 4, kind="decoder", ttft_ms=120.0, tpot_ms=30.0, output_tokens=32,
                    accuracy=Accuracy(cosine=1.0))
    found = reasons(dec, Constraints(ttft_ms=100.0, tpot_ms=25.0))
    assert [(r.metric, r.value, r.limit) for r in found] == [("ttft_ms", 120.0, 100.0), ("tpot_ms", 30.0, 25.0)]
    assert reasons(dec, Constraints(ttft_ms=200.0, tpot_ms=40.0)) == []
    whole = reasons(dec, Constraints(p99_ms=1000.0))  # 120 + 31 x 30 = 1050 ms per request
    assert (whole[0].metric, whole[0].value) == ("request_ms", 1050.0)


def test_memory_fit_counts_weights_and_kv_cache_at_batch_and_length():
    # 2 layers -> 4 cache tensors, 2 kv heads, head_dim 16, fp32, batch 8, 48 positions
    kv = kv_cache_bytes(layers_kv_tensors=4, kv_heads=2, head_dim=16, itemsize=4, batch=8, length=48)
    assert kv == 4 * 2 * 16 * 4 * 8 * 48 == 196_608
    dec = Candidate("xla:gpu", "fp32", 8, kind="decoder", weight_bytes=1_000_000, kv_cache_bytes=kv,
                    device_memory_bytes=1_100_000, ttft_ms=1.0, tpot_ms=1.0)
    found = reasons(dec, Constraints())
    assert [(r.kind, r.value, r.limit) for r in found] == [("memory", 1_196_608.0, 1_100_000.0)]
    dec.device_memory_bytes = 1_196_608  # exactly fits
    assert reasons(dec, Constraints()) == []


def test_replica_count_and_monthly_cost():
    c = enc("onnxruntime:cpu", "fp32", 8, cost=1.0, items=120.0, usd_per_hour=0.5)
    r = replicas_for(c, 1000.0)
    assert r.replicas == 9 and r.monthly_usd == pytest.approx(9 * 0.5 * 730)  # ceil(1000 / 120)
    assert replicas_for(c, 240.0).replicas == 2  # exactly 2 replicas' worth
    dec = Candidate("x:cpu", "fp32", 4, kind="decoder", ttft_ms=100.0, tpot_ms=10.0, output_tokens=11,
                    usd_per_hour=2.0)
    # one request batch of 4 takes 100 + 10 x 10 = 200 ms -> 20 requests/s per replica
    assert dec.requests_per_s() == pytest.approx(20.0)
    assert replicas_for(dec, 50.0).replicas == 3
    plan = make_plan(TABLE, LIMITS, requests_per_s=250.0)
    assert plan.replicas.replicas == 3 and plan.replicas.monthly_usd == pytest.approx(3 * 730.0)


def test_pareto_fronts():
    front = pareto_front(TABLE, accuracy_value("cosine"), maximize=True)
    # (2, 0.99) cheapest; (3, 0.9999) beats (3.5, 0.9995); (4, 1.0) most accurate; (5, 1.0) dominated by (4, 1.0)
    assert [(c.usd_per_1m, c.accuracy.cosine) for c in front] == [(2.0, 0.990), (3.0, 0.9999), (4.0, 1.0)]
    latency = pareto_front(TABLE, lambda c: c.latency_p99_ms, maximize=False)
    assert [(c.usd_per_1m, c.latency_p99_ms) for c in latency] == [(2.0, 5.0)]
    # within a tolerance two accuracies are equal: the dearer one drops off the front
    near = [enc("a:cpu", "fp32", 1, cost=1.0, cosine=0.99897468), enc("b:cpu", "fp32", 1, cost=2.0, cosine=0.99897469)]
    assert len(pareto_front(near, accuracy_value("cosine"), maximize=True)) == 2
    assert [c.target for c in pareto_front(near, accuracy_value("cosine"), maximize=True, tolerance=1e-6)] == ["a:cpu"]
    unpriced = TABLE + [enc("reference:cpu", "fp32", 1, cost=None)]
    assert len(pareto_front(unpriced, accuracy_value("cosine"), maximize=True)) == 3


def test_no_feasible_candidate_lists_the_closest_misses():
    plan = make_plan(TABLE, Constraints(floors={"cosine": 0.99999}, p99_ms=6.0))
    assert plan.recommended is None and plan.feasible == []
    closest = plan.closest_misses(2)
    # int8: cosine 0.99 (0.00999 short) and p99 5 ms meets; the others miss p99 by 33 %+ or more
    assert closest[0].candidate.precision == "int8" and len(closest[0].reasons) == 1


def test_floor_parsing():
    assert parse_floor("cosine=0.999") == ("cosine", 0.999)
    assert parse_floor("top1=0.99") == ("top1", 0.99)
    with pytest.raises(UsageError):
        parse_floor("bleu=0.3")
    with pytest.raises(UsageError):
        parse_floor("cosine=high")


def test_price_uses_portarun_cost_and_profile_memory():
    profile = HardwareProfile("gpu-x", memory_gb=Sourced(80.0), cloud_usd_per_hour=Sourced(3.6, "test"))
    c = Candidate("xla:gpu", "fp32", 1, tokens_per_s=1000.0, unit="tokens")
    price(c, profile, CostAssumptions())
    # $3.6/h / (1000 tok/s x 3600 s) x 1e6 = $1 per 1M tokens
    assert c.usd_per_1m == pytest.approx(1.0) and c.device_memory_bytes == 80_000_000_000
    assert c.cost["basis"] == "cloud" and c.hardware == "gpu-x"
    zero = price(Candidate("x:cpu", "fp32", 1, items_per_s=10.0, unit="items"), None, CostAssumptions())
    assert zero.usd_per_1m is None and "no hardware profile" in zero.cost["note"]
    assert math.isfinite(price(Candidate("x:cpu", "fp32", 1, items_per_s=5.0, unit="items"), profile,
                               CostAssumptions(price_per_hour_usd=0.0)).usd_per_1m)
