"""``portarun bench --ray``: one batch sweep (``portarun.benchmark.sweep``) as a Ray task on a node
that offers the target, placed by the same rules as the conformance cells (``placement``).

The model or artifact path must be readable on that node (a shared file system, or a built-in
model). The hardware profile used for pricing is chosen on that node (``profile_for``), so a CPU
target is priced with the CPU it ran on.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from portarun import RunError, UsageError
from portarun.benchmark import SweepConfig, SweepResult

from .driver import DEFAULT_PLACEMENT_TIMEOUT_S, connect, feasible_nodes, import_ray, is_lost_worker
from .nodes import check_versions, describe_here, probe_nodes
from .placement import placement_for


def _open(source: str, target: str | None, precision: str, options: dict[str, Any]) -> Any:
    import portarun
    from portarun.artifact import is_artifact

    if is_artifact(source):
        return portarun.load_compiled(source, target)
    return portarun.compile(portarun.load(source), target, precision, **options)


def _sweep_task(source: str, target: str, precision: str, options: dict[str, Any], config: SweepConfig,
                hardware: str | None, assumptions: Any) -> tuple[SweepResult, dict[str, Any]]:
    from portarun.benchmark import sweep

    from ..hardware import profile_for

    with _open(source, target, precision, options) as executable:
        profile = profile_for(hardware, str(executable.target))
        return sweep(executable, config, profile=profile, assumptions=assumptions), describe_here()


def sweep_on_ray(source: str, target: str, precision: str = "fp32", *, address: str, config: SweepConfig,
                 options: Mapping[str, Any] | None = None, hardware: str | None = None, assumptions: Any = None,
                 placement_timeout_s: float = DEFAULT_PLACEMENT_TIMEOUT_S,
                 accelerator_types: Mapping[str, str] | None = None) -> tuple[SweepResult, dict[str, Any]]:
    """The sweep's result and the node it ran on (a dying worker is a RunError, not retried: a sweep is
    one measurement on one node, and rerunning it elsewhere would measure another machine)."""
    if not target:
        raise UsageError("--ray needs -t/--target: the target decides which node runs the sweep")
    ray = import_ray()
    owns = connect(address)
    try:
        check_versions(probe_nodes())
        placement = placement_for(target, ray.cluster_resources(), accelerator_types=accelerator_types)
        end = time.monotonic() + (placement_timeout_s if placement.unplaceable is None else 0.0)
        while not feasible_nodes(placement) and time.monotonic() < end:
            time.sleep(1.0)
        if not feasible_nodes(placement):
            raise UsageError(f"no node offers {target}: asked for {placement.describe()}",
                             hint="see the README's 'Fleet sweeps on Ray' for the resources a node declares")
        task = ray.remote(_sweep_task).options(**placement.ray_options(), max_retries=0)
        try:
            return ray.get(task.remote(source, target, precision, dict(options or {}), config, hardware,
                                       assumptions))
        except Exception as exc:
            if is_lost_worker(exc):
                raise RunError(f"the worker running the sweep for {target} died ({type(exc).__name__})",
                               hint="rerun without --ray on that node to see the backend's own error") from None
            raise
    finally:
        if owns:
            ray.shutdown()
