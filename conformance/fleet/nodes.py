"""What each Ray node is: probed once at the start of a fleet run, pinned to each live node.

The probe reports the node's portarun version (a node with another version is refused before any
cell runs), host name, CPU, the targets portarun finds available there and the SDK version of every
backend. Cells record the same facts for the node that ran them.
"""

from __future__ import annotations

import socket
from typing import Any, Sequence

import portarun
from portarun import UsageError
from portarun.plugin import environment

PROBE_TIMEOUT_S = 120.0


def describe_here() -> dict[str, Any]:
    """This process's node: id, host, hardware and SDK versions (runs inside a Ray worker)."""
    import ray

    backends = {info.name: info.version for info in portarun.list_backends() if info.available}
    try:
        targets = [str(t) for t in portarun.available_targets()]
    except portarun.PortarunError as exc:  # still a node; it just offers nothing portarun can use
        targets = [f"(none: {exc})"]
    return {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
            "portarun": portarun.__version__, "environment": environment(), "sdk_versions": backends,
            "targets": targets}


def probe_nodes(timeout_s: float = PROBE_TIMEOUT_S) -> list[dict[str, Any]]:
    """``describe_here`` on every live node (pinned there), with each node's declared resources."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(describe_here)
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
