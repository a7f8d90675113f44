"""Benchmark statistics: warm-up, run counts, percentiles, throughput, energy marked when not measured."""

from __future__ import annotations

import pytest

import portarun
from portarun.benchmark import benchmark_executable, energy_sensor, measure, percentile


def test_percentile_is_nearest_rank():
    samples = [float(v) for v in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([5.0, 1.0, 3.0], 99) == 5.0  # with few samples p99 is the slowest
    with pytest.raises(ValueError):
        percentile([], 50)


def test_measure_warms_up_then_times_exactly_runs():
    calls = []
    result = measure(lambda: calls.append(1), warmup=4, runs=7, items_per_run=8, tokens_per_run=8 * 128)
    assert len(calls) == 11 and result.runs == 7 and len(result.samples_ms) == 7
    assert result.min_ms <= result.median_ms <= result.p99_ms <= result.max_ms
    assert result.items_per_second == pytest.approx(8 * 1e3 / result.median_ms)
    assert result.tokens_per_second == pytest.approx(128 * result.items_per_second)
    assert result.peak_memory_bytes > 0


def test_energy_is_marked_not_measured_without_a_sensor():
    sensor, why = energy_sensor("npu")
    assert sensor is None and "no energy sensor" in why
    result = measure(lambda: None, warmup=0, runs=2, device_kind="npu")
    assert result.energy.joules_per_run is None and result.energy.sensor == "none" and result.energy.note


def test_benchmark_executable_counts_batch_and_tokens():
    model = portarun.load("builtin:transformer")
    feeds = portarun.random_feeds(model.inputs, seed=0, dims={"batch": 2, "seq": 8})
    with portarun.compile(model, "onnxruntime:cpu") as exe:
        result = benchmark_executable(exe, feeds, warmup=1, runs=3, tokens_axis="seq")
    assert (result.items_per_run, result.tokens_per_run, result.runs) == (2, 16, 3)
    assert result.tokens_per_second == pytest.approx(8 * result.items_per_second)


def test_peak_memory_window_can_be_reset():
    # in a fresh process: inside a long test session other threads (XLA, ORT pools) allocate and free
    # memory at will, so "the peak fell by the freed 40 MB" is only a fact where nothing else runs
    import subprocess
    import sys

    code = """
import sys
import numpy as np
from portarun.benchmark import peak_rss_bytes, reset_peak_memory
big = np.ones(40_000_000 // 8)  # 40 MB touched
big += 1
high = peak_rss_bytes()
del big
if not reset_peak_memory():
    sys.exit(3)
print(high - peak_rss_bytes())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if done.returncode == 3:
        pytest.skip("this kernel does not allow resetting the peak RSS (/proc/self/clear_refs)")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 20_000_000  # the peak after the reset is below the 40 MB high


def test_sweep_prices_each_batch_and_marks_one():
    """The batch sweep `portarun bench` prints, called as a library (as a plan command or a fleet driver would)."""
    from portarun.benchmark import SweepConfig, sweep
    from portarun.cost import CostAssumptions

    seen = []
    with portarun.compile("builtin:mlp", "onnxruntime:cpu") as exe:
        result = sweep(exe, SweepConfig(batches=[1, 3], runs=2, warmup=0),
                       assumptions=CostAssumptions(price_per_hour_usd=3.6), progress=seen.append)
    assert [r["batch"] for r in result.rows] == [1, 3] and seen == result.rows
    assert [r["benchmark"]["items_per_run"] for r in result.rows] == [1, 3]
    assert not result.decoder and result.unit == "items" and result.profile is None
    for row in result.rows:
        assert row["usd_per_million"] == pytest.approx(3.6 / (row["per_second"] * 3600) * 1e6)
    assert sum(r["chosen"] for r in result.rows) == 1 and result.chosen["chosen"]
    document = result.to_dict()
    assert document["rows"] is result.rows and document["provenance"]["target"] == "onnxruntime:cpu"


def test_sweep_with_an_unmeetable_limit_chooses_nothing():
    from portarun.benchmark import SweepConfig, sweep

    with portarun.compile("builtin:mlp", "onnxruntime:cpu") as exe:
        result = sweep(exe, SweepConfig(batches=[1], runs=1, warmup=0, max_latency_ms=0.0))
    assert result.chosen is None and result.hourly.usd_per_hour is None  # no profile, no price: unpriced
