"""Is one Executable safe to share across threads? Run it from N threads and compare bitwise.

Each thread gets its own inputs (different values and, when the model has a symbolic batch
dim, different shapes), runs them repeatedly on the one shared Executable, and every result
is compared byte for byte with what a single-threaded run gave for that input. A result
that belongs to another input, an exception, or a thread that never finishes is a failure.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portarun import Executable


@dataclass
class ThreadReport:
    threads: int
    runs: int = 0
    mismatches: int = 0
    exceptions: list[str] = field(default_factory=list)
    hung_threads: int = 0
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and not self.exceptions and self.hung_threads == 0

    def summary(self) -> str:
        return (f"{self.threads} threads: {self.runs} runs, {self.mismatches} mismatches, "
                f"{len(self.exceptions)} exceptions, {self.hung_threads} hung, {self.wall_seconds:.3f} s")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def expected_results(executable: Executable, feeds_list: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Single-threaded results, one per feed set: what every threaded run must reproduce."""
    return [executable.run(feeds) for feeds in feeds_list]


def hammer(executable: Executable, feeds_list: list[dict[str, np.ndarray]], *, threads: int = 8,
           runs_per_thread: int = 50, expected: list[dict[str, Any]] | None = None,
           join_timeout: float = 120.0) -> ThreadReport:
    """Thread ``i`` runs ``feeds_list[i % len(feeds_list)]`` ``runs_per_thread`` times on ``executable``."""
    if expected is None:
        expected = expected_results(executable, feeds_list)
    report = ThreadReport(threads=threads)
    lock = threading.Lock()
    start_together = threading.Barrier(threads)

    def work(index: int) -> None:
        feeds, want = feeds_list[index % len(feeds_list)], expected[index % len(feeds_list)]
        try:
            start_together.wait(timeout=join_timeout)
        except threading.BrokenBarrierError:
            pass
        for _ in range(runs_per_thread):
            try:
                got = executable.run(feeds)
                wrong = set(got) != set(want) or not all(_same(got[k], want[k]) for k in want)
            except Exception as exc:  # noqa: BLE001 - every exception is a finding here
                with lock:
                    report.runs += 1
                    report.exceptions.append(f"{type(exc).__name__}: {traceback.format_exception_only(exc)[-1].strip()}")
                continue
            with lock:
                report.runs += 1
                report.mismatches += int(wrong)

    workers = [threading.Thread(target=work, args=(i,), daemon=True, name=f"hammer-{i}") for i in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    deadline = began + join_timeout
    for worker in workers:
        worker.join(timeout=max(0.0, deadline - time.perf_counter()))
    report.wall_seconds = time.perf_counter() - began
    report.hung_threads = sum(worker.is_alive() for worker in workers)
    return report


__all__ = ["ThreadReport", "expected_results", "hammer"]
