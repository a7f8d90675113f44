"""The conformance matrix on a Ray cluster: each cell a Ray task placed by its target's resources.

The driver probes every node (versions must match), asks Ray for each cell's resources
(``placement``), and collects every result into one ``MatrixResult``, each cell carrying the node
it ran on. A target no node offers is reported as such after ``placement_timeout_s`` (Ray would
queue it forever); a cell whose worker or node dies is retried once on another node that fits,
else it is a crash with the reason; a cell over ``timeout_s`` once started is cancelled. The rest
of the run goes on.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from portarun import Precision, UsageError

from ..cases import Case
from ..harness import CaseResult, MatrixResult, _run_cell, precisions_for
from ..isolation import InProcess
from ..tasks import reference_task
from ..tolerances import explain_tolerance
from .nodes import check_versions, describe_here, probe_nodes
from .placement import Placement, placement_for

INSTALL_HINT = "pip install 'portarun[ray]'"
DEFAULT_PLACEMENT_TIMEOUT_S = 30.0


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"--ray needs Ray, which cannot be imported ({exc})", hint=INSTALL_HINT) from None
    return ray


def connect(address: str) -> bool:
    """Join ``address`` (``auto``: the cluster this machine belongs to; ``local``: start one for this run).

    Returns True when this call started or joined Ray (then ``ray.shutdown()`` is the caller's).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == "local":
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return True


# -- inside the Ray worker -------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _runner(plugins: tuple[str, ...]) -> InProcess:
    return InProcess(plugins)  # the Ray worker is the isolation: a crash kills it and Ray reports it


_references: dict[str, Any] = {}  # per worker process: a case's reference is computed once per node


def _cell(tracker: Any, key: str, case: Case, target: str, precision: str, settings: dict[str, Any],
          plugins: tuple[str, ...], pricing: tuple[str | None, Any] | None) -> CaseResult:
    import ray

    node = describe_here()
    # wait for the tracker to have it: a cell that kills its worker must not outrun the message
    ray.get(tracker.started.remote(key, node["node_id"]))
    runner = _runner(plugins)
    if case.name not in _references:
        _references[case.name] = runner.call(reference_task, case)
    result = _run_cell(runner, case, target, Precision.parse(precision), _references[case.name], **settings)
    result.node = node
    if pricing is not None:  # priced here: a CPU target's profile is this node's CPU, not the driver's
        from ..report import attach_costs

        attach_costs(MatrixResult([result]), *pricing)
    return result


class _Tracker:
    """Which node each cell started on, and when (cells tell it first thing)."""

    def __init__(self) -> None:
        self.starts: dict[str, tuple[str, float]] = {}

    def started(self, key: str, node_id: str) -> None:
        self.starts[key] = (node_id, time.time())

    def where(self) -> dict[str, tuple[str, float]]:
        return dict(self.starts)


# -- the driver ------------------------------------------------------------------------------------
class _Cell:
    def __init__(self, key: int, case: Case, target: str, precision: Precision, placement: Placement):
        self.key, self.case, self.target, self.precision, self.placement = key, case, target, precision, placement
        self.attempts: list[str] = []  # node ids tried
        self.ref: Any = None
        self.result: CaseResult | None = None
        self.timed_out = False

    @property
    def token(self) -> str:
        """The tracker's key for the current attempt (a retry's clock starts when the retry starts)."""
        return f"{self.key}/{len(self.attempts)}"

    def failed(self, status: str, message: str, node: dict | None = None) -> CaseResult:
        tolerance, why = explain_tolerance(self.precision, backend=self.target.split(":")[0], case=self.case.name)
        result = CaseResult(self.case.name, self.target, self.precision.value, status, message=message,
                            tolerance=tolerance.to_dict(), tolerance_overrides=why, tokens_axis=self.case.tokens_axis)
        result.node = node
        return result


def feasible_nodes(placement: Placement, exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive") and n["NodeID"] not in exclude
            and placement.fits(n.get("Resources", {}))]


def _wait_for_a_node(cell: _Cell, timeout_s: float) -> bool:
    """Whether some live node fits the cell, waiting up to ``timeout_s`` for one to join."""
    end = time.monotonic() + timeout_s
    while True:
        if feasible_nodes(cell.placement):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))


def is_lost_worker(exc: BaseException) -> bool:
    import ray.exceptions as rex

    lost = tuple(getattr(rex, name) for name in ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError",
                                                 "ActorDiedError", "ObjectLostError", "OwnerDiedError")
                 if hasattr(rex, name))
    return isinstance(exc, lost)


def run_matrix_on_ray(cases: Iterable[Case], targets: Iterable[str],
                      precisions: Sequence[Precision | str] | None = None, *, runs: int = 20, warmup: int = 3,
                      budget_s: float = 5.0, timeout_s: float = 300.0,
                      plugins: Sequence[str] = (), localize_failures: bool = True,
                      placement_timeout_s: float = DEFAULT_PLACEMENT_TIMEOUT_S,
                      accelerator_types: Mapping[str, str] | None = None,
                      pricing: tuple[str | None, Any] | None = None,
                      progress: Callable[[CaseResult, int, int], None] | None = None) -> MatrixResult:
    """Like ``run_matrix``, with every cell a Ray task on a node that offers its target (Ray must be connected).

    ``pricing`` (hardware profile name or None, CostAssumptions) prices each cell on its node.
    """
    ray = import_ray()
    start = time.perf_counter()
    nodes = probe_nodes()
    check_versions(nodes)
    by_id = {n["node_id"]: n for n in nodes}
    cluster = ray.cluster_resources()
    cases, targets = list(cases), [str(t) for t in targets]
    cells = [_Cell(i, case, target, precision, placement_for(target, cluster, accelerator_types=accelerator_types))
             for i, (case, target, precision) in enumerate(
                 (c, t, Precision.parse(p)) for c in cases for t in targets
                 for p in (precisions if precisions else precisions_for(t)))]
    tracker = ray.remote(num_cpus=0)(_Tracker).remote()
    remote_cell = ray.remote(_cell)
    settings = {"runs": runs, "warmup": warmup, "budget_s": budget_s, "timeout_s": timeout_s,
                "localize_failures": localize_failures}
    done: list[CaseResult] = []

    def finish(cell: _Cell, result: CaseResult) -> None:
        cell.result, cell.ref = result, None
        done.append(result)
        if progress:
            progress(result, len(done), len(cells))

    def submit(cell: _Cell, node_id: str | None = None) -> None:
        options = {**cell.placement.ray_options(), "max_retries": 0}
        if node_id is not None:  # a retry: pinned to another node that fits
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        cell.ref = remote_cell.options(**options).remote(tracker, cell.token, cell.case, cell.target,
                                                         cell.precision.value, settings, tuple(plugins), pricing)

    restarts = 0
    for cell in cells:
        if _wait_for_a_node(cell, placement_timeout_s if cell.placement.unplaceable is None else 0.0):
            submit(cell)
        else:
            finish(cell, cell.failed("error", f"no node offers {cell.target}: asked for {cell.placement.describe()}; "
                                              f"none of {len(nodes)} node(s) has it "
                                              f"(waited {placement_timeout_s:g} s)"))
    while any(c.ref is not None for c in cells):
        pending = {c.ref: c for c in cells if c.ref is not None}
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        starts = ray.get(tracker.where.remote())
        for ref in ready:
            cell = pending[ref]
            node_id = starts.get(cell.token, (None, 0.0))[0]
            try:
                finish(cell, ray.get(ref))
            except Exception as exc:
                if cell.timed_out:
                    finish(cell, cell.failed("timeout", f"timeout: over {timeout_s:g} s on node "
                                                        f"{_name(by_id, node_id)}; cancelled", by_id.get(node_id)))
                elif is_lost_worker(exc):
                    restarts += 1
                    cell.attempts.append(node_id or "?")
                    others = feasible_nodes(cell.placement, exclude=cell.attempts) if len(cell.attempts) == 1 else []
                    if others:
                        submit(cell, others[0]["NodeID"])
                        continue
                    tried = ", ".join(_name(by_id, n) for n in cell.attempts)
                    why = "no other node offers it" if len(cell.attempts) == 1 else "it died again"
                    finish(cell, cell.failed("crash", f"crash: the worker running the cell died on {tried} "
                                                      f"({type(exc).__name__}); {why}", by_id.get(node_id)))
                else:
                    finish(cell, cell.failed("error", f"{type(exc).__name__}: {_last_line(exc)}", by_id.get(node_id)))
        now = time.time()
        for cell in pending.values():
            started = starts.get(cell.token)
            if cell.ref is not None and not cell.timed_out and started and now - started[1] > timeout_s:
                cell.timed_out = True
                ray.cancel(cell.ref, force=True)
    ray.kill(tracker)
    matrix = MatrixResult([c.result for c in cells], time.perf_counter() - start, restarts)
    matrix.fleet = {"nodes": nodes, "placement_timeout_s": placement_timeout_s,
                    "placements": {t: placement_for(t, cluster, accelerator_types=accelerator_types).describe()
                                   for t in targets}}
    return matrix


def _name(by_id: Mapping[str, dict], node_id: str | None) -> str:
    node = by_id.get(node_id or "")
    if node is None:
        return (node_id or "?")[:12]
    return f"{node.get('hostname', '?')}/{node_id[:12]}"


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
