"""What each Ray node is: probed once at the start of a fleet run, pinned to each live node.

The probe reports the node's portarun version (a node with another version is refused before any
cell runs), host name, CPU, the targets portarun finds available there and the SDK version of every
backend. Cells record the same facts for the node that ran them.
"""

from __future__ import annotations

import functools
import socket
from typing import Any, Sequence

import portarun
from portarun import UsageError
from portarun.plugin import environment

PROBE_TIMEOUT_S = 120.0


@functools.lru_cache(maxsize=1)
def describe_here() -> dict[str, Any]:
    """This process's node: id, host, hardware and SDK versions (runs inside a Ray worker; once per worker)."""
    import ray

    from ..hardware import local_profile, measure_local

    infos = [info for info in portarun.list_backends() if info.available]
    backends = {info.name: info.version for info in infos}
    devices = sorted({f"{d.target}" + (f" ({d.description})" if d.description else "")
                      for info in infos for d in info.devices})
    try:
        targets = [str(t) for t in portarun.available_targets()]
    except portarun.PortarunError as exc:  # still a node; it just offers nothing portarun can use
        targets = [f"(none: {exc})"]
    # a short measurement (tens of ms): enough to tell a node's class, not to price it
    measured = measure_local(copy_mib=32, matmul_n=256, repeats=2)
    profile = local_profile(measured)
    hardware = {"profile": profile.description, "bandwidth_gbs": round(measured.bandwidth_gbs, 1),
                "matmul_gflops": round(measured.matmul_gflops, 1), "devices": devices}
    return {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
            "portarun": portarun.__version__, "environment": environment(), "hardware": hardware,
            "sdk_versions": backends, "targets": targets}


def _describe() -> dict[str, Any]:
    return describe_here()  # a plain function for ray.remote (it does not take the lru_cache wrapper)


def probe_nodes(timeout_s: float = PROBE_TIMEOUT_S) -> list[dict[str, Any]]:
    """``describe_here`` on every live node (pinned there), with each node's declared resources."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_describe)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in nodes]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    described = []
    for node, ref in zip(nodes, refs):
        entry = {"node_id": node["NodeID"], "address": node.get("NodeManagerAddress"),
                 "resources": dict(node.get("Resources", {}))}
        if ref in ready:
            try:
                entry.update(ray.get(ref))
            except Exception as exc:  # a node whose Python cannot import portarun: refused below
                entry["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc) else ''}"
        else:
            entry["error"] = f"did not answer the probe within {timeout_s:g} s"
        described.append(entry)
    return described


def check_versions(nodes: Sequence[dict[str, Any]], version: str = portarun.__version__) -> None:
    """Refuse the run when a node runs another portarun version (or none): results would not compare."""
    bad = [n for n in nodes if n.get("error") or n.get("portarun") != version]
    if bad:
        lines = [f"{n.get('hostname') or n.get('address')} ({n['node_id'][:12]}): "
                 + (n.get("error") or f"portarun {n.get('portarun')}") for n in bad]
        raise UsageError(f"{len(bad)} Ray node(s) cannot take part: driver has portarun {version}; "
                         + "; ".join(lines),
                         hint=f"install the same version on every node: pip install 'portarun[ray,...]=={version}'")
