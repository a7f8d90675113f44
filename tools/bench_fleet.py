"""A fleet run on a local 3-node Ray cluster against the same matrix in one process.

    python tools/bench_fleet.py --models mlp,cnn --runs 5

Each node declares one `portarun/<target>` resource (onnxruntime:cpu, openvino:cpu, xla:cpu), so
each target's cells land on their own node. Prints cells per node and both wall times. All nodes
share this machine's cores: the numbers show the overhead and the overlap, not a real fleet's speed-up.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

TARGETS = ["onnxruntime:cpu", "openvino:cpu", "xla:cpu"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.cluster_utils import Cluster

    from portarun_conformance import builtin_cases, run_matrix
    from portarun_conformance.fleet import run_matrix_on_ray

    cases = builtin_cases(args.models.split(","))
    started = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus_per_node, "include_dashboard": False,
                                                            "resources": {f"portarun/{TARGETS[0]}": 1}})
    for target in TARGETS[1:]:
        cluster.add_node(num_cpus=args.cpus_per_node, resources={f"portarun/{target}": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    cluster_up = time.perf_counter() - started
    fleet = run_matrix_on_ray(cases, TARGETS, ["fp32"], runs=args.runs, warmup=1, localize_failures=False)
    ray.shutdown()
    cluster.shutdown()
    single = run_matrix(cases, TARGETS, ["fp32"], runs=args.runs, warmup=1, localize_failures=False)
    per_node = collections.Counter((r.node or {}).get("node_id", "?")[:12] for r in fleet.results)
    by_node = collections.defaultdict(set)
    for r in fleet.results:
        by_node[(r.node or {}).get("node_id", "?")[:12]].add(r.target)
    report = {"cells": len(fleet.results), "statuses": fleet.counts(), "single_statuses": single.counts(),
              "cluster_start_s": round(cluster_up, 1), "fleet_s": round(fleet.seconds, 1),
              "single_process_s": round(single.seconds, 1), "load_average": os.getloadavg(),
              "cells_per_node": {n: {"cells": c, "targets": sorted(by_node[n])} for n, c in per_node.items()}}
    print(json.dumps(report, indent=2))
    if args.json_path:
        from portarun.plugin import atomic_write_text

        atomic_write_text(args.json_path, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
