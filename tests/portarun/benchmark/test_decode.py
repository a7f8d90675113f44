"""portarun.benchmark.measure_decode: the decode tokens/s that conformance's $/1M tokens table and
`portarun plan` both price. Real decoder (built-in decoder-tiny) on onnxruntime; no timed assertion."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

import portarun
from portarun.benchmark import measure_decode, measure_decode_side_by_side


@pytest.fixture(scope="module")
def exe():
    with portarun.compile(portarun.models.build("decoder-tiny"), "onnxruntime:cpu", "fp32") as compiled:
        yield compiled


PROMPT = np.array([[3, 1, 4, 1, 5, 9]], dtype=np.int64)


def test_the_rate_is_the_median_over_repeats_of_decode_steps_and_the_tokens_are_greedys(exe):
    speed = measure_decode(exe, PROMPT, 6, repeats=3)
    assert len(speed.tokens_per_s_each_repeat) == 3
    assert speed.decode_tokens_per_s == statistics.median(speed.tokens_per_s_each_repeat)
    assert (speed.batch, speed.prompt_tokens, speed.new_tokens, speed.cache) == (1, 6, 6, "dynamic")
    assert speed.same_tokens_every_repeat
    assert speed.tokens == portarun.generate(exe, PROMPT, 6).tokens.tolist()
    assert speed.tpot_p99_ms >= speed.tpot_median_ms > 0


def test_a_static_cache_keeps_one_capacity_for_warm_up_and_timed_runs(exe):
    speed = measure_decode(exe, PROMPT, 5, repeats=1, cache="static", bucket=16)
    assert speed.cache == "static" and speed.capacity == 16  # 6 + 5 - 1 = 10 slots, rounded up to 16
    assert speed.tokens == portarun.generate(exe, PROMPT, 5).tokens.tolist()


def test_side_by_side_measures_each_entry(exe):
    speeds = measure_decode_side_by_side({"a": exe, "b": exe}, PROMPT[0], 4, repeats=2)
    assert set(speeds) == {"a", "b"} and speeds["a"].tokens == speeds["b"].tokens


def test_a_decode_needs_two_tokens_at_least(exe):
    with pytest.raises(portarun.UsageError, match="new_tokens >= 2"):
        measure_decode(exe, PROMPT, 1)
