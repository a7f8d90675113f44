"""CI fuzz: 200 seeded mutants on every available CPU backend, each in a memory-limited worker.

Asserts what issue 12 asks to keep true: no exception other than PortarunError escapes portarun
(load, compile, feeds, run), no worker is killed (segfault, abort), nothing runs past the timeout.
"""

from __future__ import annotations

import importlib.util

from portarun_conformance.fuzz import OUTCOMES, fuzz, mutants

SDK_OF = {"onnxruntime:cpu": "onnxruntime", "openvino:cpu": "openvino", "xla:cpu": "jax", "reference:cpu": "onnx"}
COUNT = 200


def test_mutants_are_seeded_and_varied():
    first, again = mutants(40, seed=3), mutants(40, seed=3)
    assert [m.data for m in first] == [m.data for m in again]
    assert len({m.data for m in first}) == 40
    assert {m.seed_name for m in first} >= {"mlp", "cnn", "if", "loop", "gather", "external", "function"}


def test_two_hundred_mutants_leak_nothing_kill_nothing_hang_nothing():
    targets = [t for t, module in SDK_OF.items() if importlib.util.find_spec(module) is not None]
    report = fuzz(COUNT, targets, seed=0, workers=2, timeout_s=60, memory_mb=4096)
    summary = report.table() + "\n" + "\n".join(
        f"#{f['mutant']} {f['seed']} {'+'.join(f['mutations'])} on {f['target']}: {f['outcome']} at {f['stage']}: "
        f"{f['type']} {f['message'][:200]}" for f in report.findings)
    for target in targets:
        counts = report.counts[target]
        assert sum(counts.values()) == COUNT, summary
        assert counts["ok"] > 0 and counts["error"] > 0, summary  # the fuzz reaches both ends
    assert not report.findings, summary
    assert set(OUTCOMES) == {"ok", "error", "leak", "killed", "timeout"}
