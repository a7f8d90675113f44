"""Each matrix cell runs in a spawned worker: a backend that crashes or hangs fails its cell only."""

from __future__ import annotations

from pathlib import Path

from portarun_conformance import builtin_cases, run_matrix
from portarun_conformance.isolation import IsolatedWorker, import_plugin

PLUGIN = str(Path(__file__).with_name("_backends.py"))


def _plugin_module():
    import sys

    import_plugin(PLUGIN)
    return next(m for name, m in sys.modules.items() if name.startswith("portarun_plugin_") and
                hasattr(m, "_crash_now"))


def test_worker_survives_crash_error_and_hang():
    plugin = _plugin_module()
    with IsolatedWorker([PLUGIN]) as worker:
        assert worker.call(plugin._answer, 21, timeout_s=30).value == 42
        crashed = worker.call(plugin._crash_now, timeout_s=30)
        assert crashed.status == "crash" and "code 7" in crashed.message
        raised = worker.call(plugin._raise, timeout_s=30)
        assert raised.status == "error" and "ValueError: deliberate" in raised.message
        hung = worker.call(plugin._sleep_forever, timeout_s=1.5)
        assert hung.status == "timeout"
        assert worker.call(plugin._answer, 1, timeout_s=30).value == 2  # a fresh worker took over
        assert worker.restarts == 2


def test_matrix_fails_crashing_and_hanging_cells_and_continues():
    _plugin_module()
    mlp = [c for c in builtin_cases() if c.name == "builtin:mlp"]
    matrix = run_matrix(mlp, ["crashy:cpu", "segv:cpu", "hangy:cpu", "liar:gpu", "onnxruntime:cpu"], ["fp32"],
                        runs=2, warmup=0, timeout_s=8, plugins=[PLUGIN])
    by_target = {r.target: r for r in matrix.results}
    assert by_target["crashy:cpu"].status == "crash"
    assert "exited with code 3" in by_target["crashy:cpu"].message
    assert by_target["segv:cpu"].status == "crash"
    assert "SIGSEGV" in by_target["segv:cpu"].message
    assert by_target["hangy:cpu"].status == "timeout"
    liar = by_target["liar:gpu"]
    assert liar.status == "fail" and liar.provenance_ok is False
    assert "ran on cpu" in liar.message
    assert by_target["onnxruntime:cpu"].status == "pass"  # the run went on after all of that
    assert not matrix.passed
    assert matrix.worker_restarts >= 3
