"""The ONNX backend node suite inside a conformance run.

``node_suite.run_node_suite`` runs in the isolated worker, a chunk of op types
at a time: an op that crashes or hangs a backend costs that chunk (its cases are
counted as errors with the reason), not the target's whole suite. Counts per
target and per op go into the reports.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .isolation import InProcess, IsolatedWorker

STATES = ("pass", "fail", "error", "skip")


def summarize(result: Any) -> dict[str, Any]:
    """Counts and per-op results of a NodeSuiteResult, as plain data."""
    counts = dict(result.counts)
    per_op = result.per_op()
    failing = [{"name": r.name, "op_type": r.op_type, "status": r.status, "reason": r.reason[:200]}
               for r in result.results if r.status in ("fail", "error")]
    return {"counts": {s: int(counts.get(s, 0)) for s in STATES}, "per_op": per_op, "failing": failing,
            "seconds": result.seconds}


def node_suite_task(target: str, rtol: float, atol: float, case_timeout_s: float,
                    ops: Sequence[str] | None = None) -> dict[str, Any]:
    """Worker side: run the node cases of ``ops`` (None: all) on ``target``; return their summary."""
    from . import node_suite  # imported lazily: it generates the cases from the onnx package (~5 s)

    cases = node_suite.load_node_cases(op_types=list(ops)) if ops else None
    result = node_suite.run_node_suite(target, cases=cases, rtol=rtol, atol=atol, timeout_s=case_timeout_s)
    return summarize(result)


def op_chunks(ops: Sequence[str] | None, chunks: int) -> list[list[str] | None]:
    """Split the op types into ``chunks`` groups (None = the whole suite in one call)."""
    if chunks <= 1 and ops is None:
        return [None]
    if ops is None:
        from . import node_suite

        ops = sorted({case.op_type for case in node_suite.load_node_cases()})
    ops = list(ops)
    size = max(1, -(-len(ops) // max(chunks, 1)))
    return [ops[i:i + size] for i in range(0, len(ops), size)]


def node_suite_available() -> tuple[bool, str]:
    try:
        from . import node_suite  # noqa: F401
    except ImportError as exc:
        return False, f"portarun_conformance.node_suite is not importable ({exc})"
    return True, ""


def _merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    for state, n in part["counts"].items():
        total["counts"][state] = total["counts"].get(state, 0) + n
    total["per_op"].update(part.get("per_op", {}))
    total["failing"].extend(part.get("failing", []))
    total["seconds"] += part.get("seconds", 0.0)


def run_node_suites(targets: Sequence[str], *, rtol: float = 1e-3, atol: float = 1e-5, case_timeout_s: float = 20.0,
                    chunk_timeout_s: float = 600.0, chunks: int = 4, isolate: bool = True,
                    plugins: Sequence[str] = (), ops: Sequence[str] | None = None,
                    task: Callable[..., dict[str, Any]] = node_suite_task,
                    progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """{"targets": {target: {passed, failed, errors, skipped, total, per_op, failing, problems}}, ...}."""
    summary: dict[str, Any] = {"targets": {}, "rtol": rtol, "atol": atol, "failed_targets": [], "note": ""}
    if task is node_suite_task:
        available, why = node_suite_available()
        if not available:
            summary["note"] = why
            return summary
    groups = op_chunks(ops, chunks) if task is node_suite_task else [list(ops) if ops else None]
    runner = IsolatedWorker(plugins) if isolate else InProcess(plugins)
    try:
        for target in targets:
            total: dict[str, Any] = {"counts": {}, "per_op": {}, "failing": [], "seconds": 0.0, "problems": []}
            for group in groups:
                outcome = runner.call(task, target, rtol, atol, case_timeout_s, group, timeout_s=chunk_timeout_s)
                if outcome.ok:
                    _merge(total, outcome.value)
                else:
                    first = outcome.message.strip().splitlines()[0] if outcome.message.strip() else ""
                    what = f"ops {group[0]}..{group[-1]}" if group else "the whole suite"
                    total["problems"].append(f"{outcome.status} running {what}: {first}")
            counts = total["counts"]
            entry = {"passed": counts.get("pass", 0), "failed": counts.get("fail", 0),
                     "errors": counts.get("error", 0), "skipped": counts.get("skip", 0),
                     "total": sum(counts.values()), "seconds": total["seconds"], "per_op": total["per_op"],
                     "failing": total["failing"], "problems": total["problems"]}
            if total["problems"]:
                summary["failed_targets"].append(target)
            summary["targets"][target] = entry
            if progress:
                progress(target, entry)
    finally:
        runner.close()
    return summary
