"""The ONNX backend node suite inside a conformance run.

``node_suite.run_node_suite`` runs in isolated workers, one strided chunk of the
cases at a time: an op that crashes or hangs a backend costs that chunk (reported
as a problem of the target), not the target's whole suite, and two or more workers
share the cores. Counts per target and per op go into the reports.
"""

from __future__ import annotations

import threading
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
                    ops: Sequence[str] | None = None, part: int = 0, parts: int = 1,
                    mode: str = "full") -> dict[str, Any]:
    """Worker side: run every ``parts``-th node case from ``part`` on (of ``ops`` only, when given;
    ``mode="sample"``: of the representative sample only)."""
    from . import node_suite  # imported lazily: the cases come from the onnx package (or their cache)

    cases = node_suite.load_node_cases(op_types=list(ops) if ops else None, sample=mode == "sample")[part::parts]
    result = node_suite.run_node_suite(target, cases=cases, rtol=rtol, atol=atol, timeout_s=case_timeout_s)
    return summarize(result)


def node_suite_available() -> tuple[bool, str]:
    try:
        from . import node_suite  # noqa: F401
    except ImportError as exc:
        return False, f"portarun_conformance.node_suite is not importable ({exc})"
    return True, ""


def fingerprint(target: str, rtol: float, atol: float, ops: Sequence[str] | None, mode: str = "full") -> str | None:
    """What a node-suite result depends on: the backend's code and SDK version, the node-suite code,
    onnx and portarun versions, tolerances and op filter. None when the backend cannot be loaded."""
    import hashlib
    import inspect
    import sys
    from pathlib import Path

    import onnx

    import portarun
    from portarun.registry import resolve_target

    try:
        backend = portarun.get_backend(resolve_target(target).backend)
        sdk = backend.sdk_version()
    except portarun.PortarunError:
        return None
    digest = hashlib.sha256()
    for part in (str(target), sdk, portarun.__version__, onnx.__version__, repr((rtol, atol, sorted(ops or []), mode))):
        digest.update(part.encode() + b"\0")
    sources = [Path(__file__).with_name("node_suite.py")]
    module_file = inspect.getsourcefile(sys.modules[type(backend).__module__])
    if module_file:
        sources += sorted(Path(module_file).parent.rglob("*.py"))
    for source in sources:
        if source.is_file():
            digest.update(source.read_bytes())
    return digest.hexdigest()[:24]


def _cache_path(key: str):
    import portarun

    return portarun.cache_dir() / "conformance" / "node-suite" / f"{key}.json"


def _cached(key: str | None) -> dict[str, Any] | None:
    import json

    if key is None:
        return None
    try:
        return json.loads(_cache_path(key).read_text())
    except (OSError, ValueError):
        return None


def _store(key: str | None, entry: dict[str, Any]) -> None:
    import json

    from portarun.plugin import atomic_write_text

    if key is not None and not entry.get("problems"):
        try:
            atomic_write_text(_cache_path(key), json.dumps(entry))
        except OSError:
            pass  # a read-only cache only costs time


def _merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    for state, n in part["counts"].items():
        total["counts"][state] = total["counts"].get(state, 0) + n
    for op, counts in part.get("per_op", {}).items():
        merged = total["per_op"].setdefault(op, {})
        for state, n in counts.items():
            merged[state] = merged.get(state, 0) + n
    total["failing"].extend(part.get("failing", []))
    total["seconds"] += part.get("seconds", 0.0)


def run_node_suites(targets: Sequence[str], *, rtol: float = 1e-3, atol: float = 1e-5, case_timeout_s: float = 20.0,
                    chunk_timeout_s: float = 600.0, parts: int = 8, workers: int | None = None,
                    isolate: bool = True, plugins: Sequence[str] = (), ops: Sequence[str] | None = None,
                    task: Callable[..., dict[str, Any]] = node_suite_task,
                    use_cache: bool = True, mode: str = "full",
                    progress: Callable[[str, dict[str, Any]], None] | None = None,
                    chunk_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """{"targets": {target: {passed, failed, errors, skipped, total, per_op, failing, problems}}, ...}.

    A target's result is cached under a fingerprint of everything it depends on (``fingerprint``), so
    a rerun with unchanged backend code and SDK reuses it; ``use_cache=False`` runs (and refreshes it).

    Each target's cases are split into ``parts`` strided chunks, run by ``workers`` isolated worker
    processes side by side (default: one per core, at most 4). Run it after the timed model matrix,
    never beside it, so latencies are measured on a quiet machine. ``mode``: "full" (every case) or
    "sample" (``node_suite.sample_cases``: every op type, a few cases each); the summary says which
    and how many cases of how many. ``chunk_progress(done, total)`` is called after every chunk.
    """
    from concurrent.futures import ThreadPoolExecutor

    from portarun.plugin import cpu_count, first_line

    summary: dict[str, Any] = {"targets": {}, "rtol": rtol, "atol": atol, "failed_targets": [], "note": "",
                               "mode": mode}
    if task is node_suite_task:
        available, why = node_suite_available()
        if not available:
            summary["note"] = why
            return summary
        from . import node_suite

        # generated once here (and cached on disk) rather than by every worker at once
        summary["cases_in_suite"] = len(node_suite.load_node_cases(op_types=list(ops) if ops else None))
        summary["cases_run"] = len(node_suite.load_node_cases(op_types=list(ops) if ops else None,
                                                              sample=mode == "sample"))
    if ops:
        parts = 1  # a few ops: one worker, one load of the cases (~10 s) beats splitting
    workers = max(1, workers or min(cpu_count(), 4)) if isolate else 1
    keys = {t: fingerprint(t, rtol, atol, ops, mode) if task is node_suite_task else None for t in targets}
    for target in targets:
        hit = _cached(keys[target]) if use_cache else None
        if hit is not None:
            summary["targets"][target] = {**hit, "cached": True, "fingerprint": keys[target]}
            if progress:
                progress(target, summary["targets"][target])
    jobs = [(target, part) for target in targets if target not in summary["targets"] for part in range(parts)]
    runners: list[Any] = []
    local = threading.local()

    def run(job: tuple[str, int]) -> tuple[str, int, Any]:
        if not hasattr(local, "runner"):
            local.runner = IsolatedWorker(plugins) if isolate else InProcess(plugins)
            runners.append(local.runner)
        target, part = job
        return target, part, local.runner.call(task, target, rtol, atol, case_timeout_s,
                                               list(ops) if ops else None, part, parts, mode,
                                               timeout_s=chunk_timeout_s)

    totals = {t: {"counts": {}, "per_op": {}, "failing": [], "seconds": 0.0, "problems": [], "done": 0}
              for t in targets}
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
            for finished, (target, part, outcome) in enumerate(pool.map(run, jobs), 1):
                if chunk_progress:
                    chunk_progress(finished, len(jobs))
                total = totals[target]
                if outcome.ok:
                    _merge(total, outcome.value)
                else:
                    total["problems"].append(f"{outcome.status} in part {part + 1}/{parts}: "
                                             f"{first_line(outcome.message)}")
                total["done"] += 1
                if total["done"] == parts:
                    counts = total["counts"]
                    entry = {"passed": counts.get("pass", 0), "failed": counts.get("fail", 0),
                             "errors": counts.get("error", 0), "skipped": counts.get("skip", 0),
                             "total": sum(counts.values()), "seconds": total["seconds"],
                             "per_op": total["per_op"], "failing": total["failing"], "problems": total["problems"]}
                    _store(keys[target], entry)
                    entry = {**entry, "cached": False, "fingerprint": keys[target]}
                    if total["problems"]:
                        summary["failed_targets"].append(target)
                    summary["targets"][target] = entry
                    if progress:
                        progress(target, entry)
    finally:
        for runner in runners:
            runner.close()
    return summary
