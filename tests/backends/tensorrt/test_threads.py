"""TensorRT's runner gives each concurrent caller its own execution context (stand-in stack, conftest.py).

The fake executes the model with the reference evaluator from whatever its context's bound
addresses hold, so two callers sharing one context (or its buffers) would read each other's
inputs: this proves portarun's plumbing hands each caller a lane of its own, not TensorRT.
"""

from __future__ import annotations

import threading

import portarun
from portarun import models
from portarun_conformance.threads import hammer


def _thread_safe_alloc(cuda):
    # the stand-in's allocator bumps a counter; real cudaMalloc is thread-safe, so make the fake so too
    lock, alloc = threading.Lock(), cuda.alloc

    def locked(nbytes):
        with lock:
            return alloc(nbytes)

    cuda.alloc = locked


def test_concurrent_callers_each_get_an_execution_context(fake_stack, tmp_path):
    _trt, cuda = fake_stack
    _thread_safe_alloc(cuda)
    model = models.build("mlp")
    feeds = [portarun.random_feeds(model.inputs, seed=i, dims={"batch": 1 + i % 3}) for i in range(8)]
    with portarun.compile(model, "reference") as oracle:
        expected = [oracle.run(f) for f in feeds]
    with portarun.compile(model, "tensorrt:cuda", cache_dir=str(tmp_path)) as exe:
        single = exe.run(feeds[0])
        assert single.keys() == expected[0].keys()
        report = hammer(exe, feeds, threads=8, runs_per_thread=6, join_timeout=120,
                        expected=[exe.run(f) for f in feeds])
        lanes = len(exe.runner._lanes)  # one execution context per caller that found all others busy
    assert report.ok, report.summary()
    assert 1 <= lanes <= 8
