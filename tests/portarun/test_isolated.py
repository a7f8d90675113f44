"""compile(..., isolate=True / timeout=): the backend runs in a worker process behind the same interface."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

import portarun
from portarun import models
from portarun.errors import (CompileTimeoutError, RunError, RunTimeoutError, UnsupportedError, UsageError)

PLUGIN = str(Path(__file__).with_name("_isolation_backends.py"))
HANGY = str(Path(__file__).parents[1] / "conformance" / "_backends.py")


@pytest.fixture
def plugins(monkeypatch):
    """Test backends known to the parent and, through PORTARUN_PLUGINS, to every worker."""
    from portarun.worker import import_plugin

    monkeypatch.setenv("PORTARUN_PLUGINS", os.pathsep.join([PLUGIN, HANGY]))
    import_plugin(PLUGIN)
    import_plugin(HANGY)


def _feeds(batch=2, seed=0):
    return portarun.random_feeds(models.build("mlp").inputs, seed=seed, dims={"batch": batch})


def test_isolated_results_equal_in_process_ones_bitwise(tmp_path):
    model = models.build("mlp")
    feeds = _feeds()
    with portarun.compile(model, "onnxruntime:cpu") as local:
        expected = local.run(feeds)
    with portarun.compile(model, "onnxruntime:cpu", isolate=True) as exe:
        got = exe.run(feeds)
        assert exe.provenance.details["isolated"] is True
        assert exe.provenance.details["worker_pid"] != os.getpid()
        assert exe.provenance.backend == "onnxruntime"
        assert [s.name for s in exe.inputs] == ["x"]
        with pytest.raises(portarun.InputError):  # feeds are checked in the caller, as in-process
            exe.run({"nope": feeds["x"]})
        saved = exe.save(tmp_path / "artifact")
    for name, value in expected.items():
        assert got[name].tobytes() == value.tobytes()
    with portarun.load_compiled(saved) as loaded:
        assert loaded.run(feeds)[name].tobytes() == expected[name].tobytes()


def test_an_errors_class_and_hint_cross_the_process_boundary():
    with pytest.raises(UnsupportedError) as caught:
        portarun.compile(models.build("mlp"), "reference", "fp16", isolate=True)
    assert caught.value.hint and "reference" in str(caught.value)


def test_a_crash_is_a_run_error_naming_the_signal_and_the_next_call_restarts(plugins):
    feeds = _feeds()
    with portarun.compile(models.build("mlp"), "segvfirst:cpu", isolate=True) as exe:
        first = exe.run(feeds)
        poison = {"x": np.full_like(feeds["x"], 13.0)}
        with pytest.raises(RunError, match="SIGSEGV") as caught:
            exe.run(poison)
        assert caught.value.hint
        again = exe.run(feeds)  # a fresh worker, the model compiled again in it
        assert exe.worker.restarts == 1
        assert exe.provenance.details["isolated_restarts"] == 1
    assert again["logits" if "logits" in again else next(iter(again))].tobytes() == \
        first["logits" if "logits" in first else next(iter(first))].tobytes()


def test_a_worker_killed_between_calls_is_replaced():
    feeds = _feeds()
    with portarun.compile(models.build("mlp"), "onnxruntime:cpu", isolate=True) as exe:
        before = exe.run(feeds)
        os.kill(exe.worker.pid, signal.SIGKILL)
        exe.worker._process.join(10)
        after = exe.run(feeds)
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)


def test_a_run_timeout_kills_the_worker_and_says_how_to_raise_it(plugins):
    with portarun.compile(models.build("mlp"), "hangy:cpu", timeout=60) as exe:
        exe.timeout = 1.5  # compile had a comfortable limit; the run gets a short one
        with pytest.raises(RunTimeoutError) as caught:
            exe.run(_feeds())
    text = str(caught.value)
    assert "timed out after 1.5 s" in text and "--timeout" in text
    assert len(text.splitlines()) == 1


def test_a_compile_timeout(plugins):
    with pytest.raises(CompileTimeoutError, match="compile of 'mlp' on slowcompile:cpu timed out after 2 s"):
        portarun.compile(models.build("mlp"), "slowcompile:cpu", timeout=2)


@pytest.mark.parametrize("bad", [0, -1, "soon"])
def test_a_timeout_must_be_positive_seconds(bad):
    with pytest.raises(UsageError):
        portarun.compile(models.build("mlp"), "onnxruntime:cpu", timeout=bad)


def test_an_artifact_loads_and_runs_isolated(tmp_path):
    model = models.build("mlp")
    feeds = _feeds()
    with portarun.compile(model, "onnxruntime:cpu") as exe:
        expected = exe.run(feeds)
        exe.save(tmp_path / "artifact")
    with portarun.load_compiled(tmp_path / "artifact", isolate=True, timeout=120) as loaded:
        got = loaded.run(feeds)
        assert loaded.provenance.details["isolated"] is True
        os.kill(loaded.worker.pid, signal.SIGKILL)  # the next run loads the artifact again in a new worker
        loaded.worker._process.join(10)
        again = loaded.run(feeds)
    for name in expected:
        assert got[name].tobytes() == expected[name].tobytes() == again[name].tobytes()


SCRIPT = ("import portarun\nfrom portarun import models\n"
          "exe = portarun.compile(models.build('mlp'), 'onnxruntime:cpu', isolate=True)\n"
          "print(sorted(exe.run(portarun.random_feeds(exe.inputs, seed=0))))\nexe.close()\n")


@pytest.mark.parametrize("how", ["stdin", "unguarded script"])
def test_isolation_works_from_plain_scripts(tmp_path, how):
    # spawn re-runs the caller's __main__ in the child: '<stdin>' cannot be re-read, and a script
    # without an `if __name__ == "__main__":` guard would compile and spawn again
    import subprocess
    import sys

    if how == "stdin":
        command, stdin = [sys.executable, "-"], SCRIPT
    else:
        (tmp_path / "script.py").write_text(SCRIPT)
        command, stdin = [sys.executable, str(tmp_path / "script.py")], None
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("['logits']") == 1
