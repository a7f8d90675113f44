"""Every CPU backend's Executable, shared by 8 threads: each thread gets exactly its own result.

Distinct inputs per thread, batch sizes 1/2/3/5 mixed (XLA compiles new signatures while other
threads run), bitwise comparison with single-threaded runs, no exception, no hung thread.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import portarun
from portarun import models
from portarun_conformance.threads import expected_results, hammer

SDK_OF = {"onnxruntime": "onnxruntime", "openvino": "openvino", "xla": "jax", "reference": "onnx"}
BATCHES = (1, 2, 3, 5, 1, 2, 3, 5)


def _targets():
    for backend, module in SDK_OF.items():
        present = importlib.util.find_spec(module) is not None
        yield pytest.param(f"{backend}:cpu", marks=() if present else pytest.mark.skip(f"{module} not installed"))


def _feeds(model, count):
    # distinct values per thread (seed) and distinct shapes (batch), so a swapped result is visible
    return [portarun.random_feeds(model.inputs, seed=100 + i, dims={"batch": BATCHES[i % len(BATCHES)]})
            for i in range(count)]


@pytest.mark.parametrize("target", list(_targets()))
def test_eight_threads_get_their_own_results(target):
    model = models.build("mlp")
    runs = 3 if target.startswith("reference") else 12
    with portarun.compile(model, target) as exe:
        feeds = _feeds(model, 8)
        expected = expected_results(exe, feeds)
        # the inputs really differ, or a swapped result could not be seen
        assert len({expected[i]["logits" if "logits" in expected[i] else next(iter(expected[i]))].tobytes()
                    for i in range(8)}) == 8
        report = hammer(exe, feeds, threads=8, runs_per_thread=runs, expected=expected, join_timeout=120)
    assert report.hung_threads == 0, report.summary()
    assert report.exceptions == [], report.summary()
    assert report.mismatches == 0, report.summary()
    assert report.runs == 8 * runs


def test_xla_compiles_each_new_signature_once_under_load():
    pytest.importorskip("jax")
    model = models.build("mlp")
    with portarun.compile(model, "xla:cpu") as exe:
        feeds = _feeds(model, 8)  # four batch sizes, none compiled yet (the batch dim is symbolic)
        # expected values from a separate executable so this one's cache is cold when the threads start
        with portarun.compile(model, "xla:cpu") as oracle:
            expected = expected_results(oracle, feeds)
        report = hammer(exe, feeds, threads=8, runs_per_thread=4, expected=expected, join_timeout=120)
        assert report.ok, report.summary()
        assert exe.provenance.details["compile_count"] == len(set(BATCHES))


def test_openvino_serves_threads_from_a_pool_of_requests():
    pytest.importorskip("openvino")
    model = models.build("mlp")
    with portarun.compile(model, "openvino:cpu", performance_hint="throughput") as exe:
        assert exe.provenance.details["infer_requests"] >= 1
        feeds = _feeds(model, 8)
        report = hammer(exe, feeds, threads=8, runs_per_thread=12, join_timeout=120)
        assert report.ok, report.summary()
        assert exe._requests._created <= exe.provenance.details["infer_requests"]


def test_a_single_infer_request_is_shared_without_errors():
    """Pool of size one (the latency hint's usual answer): callers wait in turn instead of colliding."""
    pytest.importorskip("openvino")
    from portarun_backends.openvino.requests import RequestPool

    model = models.build("mlp")
    with portarun.compile(model, "openvino:cpu") as exe:
        exe._requests = RequestPool(exe.compiled, size=1)
        report = hammer(exe, _feeds(model, 8), threads=8, runs_per_thread=10, join_timeout=120)
    assert report.ok, report.summary()
    assert np.isfinite(report.wall_seconds)
