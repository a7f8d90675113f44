"""Fleet sweeps on a real multi-node Ray cluster on this machine (ray.cluster_utils.Cluster).

Three nodes each declare a different `portarun/<target>` resource for a CPU target, so each of those
cells must land on its own node. The test backends (crashy: kills its worker; hangy: never returns)
come from tests/conformance/_backends.py, imported by each Ray worker as a plugin.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("ray")

from portarun_conformance import builtin_cases  # noqa: E402
from portarun_conformance.fleet import placement_for, run_matrix_on_ray  # noqa: E402
from portarun_conformance.fleet.nodes import check_versions  # noqa: E402
from portarun_conformance.hardware import default_assumptions  # noqa: E402
from portarun_conformance.report import build_report, validate  # noqa: E402

import portarun  # noqa: E402

PLUGIN = str(Path(__file__).with_name("_backends.py"))
NODE_TARGETS = ["onnxruntime:cpu", "openvino:cpu", "xla:cpu"]


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    resources = [{f"portarun/{t}": 1} for t in NODE_TARGETS]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": resources[0],
                                                            "include_dashboard": False})
    for extra in resources[1:]:
        cluster.add_node(num_cpus=1, resources=extra)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_fleet_run_places_cells_by_resource_and_merges_one_report(cluster):
    import ray

    available = {str(t) for t in portarun.available_targets()}
    targets = [t for t in NODE_TARGETS if t in available]
    cells = targets + ["crashy:cpu", "hangy:cpu", "onnxruntime:cuda", "openvino:npu"]
    matrix = run_matrix_on_ray(builtin_cases(["mlp"]), cells, ["fp32"], runs=3, warmup=1, timeout_s=20,
                               plugins=[PLUGIN], localize_failures=False, placement_timeout_s=2)
    by_target = {r.target: r for r in matrix.results}
    assert [r.target for r in matrix.results] == cells  # the report keeps the plan's order

    # each CPU target's cell ran on the one node that declares its resource, and says so
    declared = {n["NodeID"]: n for n in ray.nodes()}
    for target in targets:
        result = by_target[target]
        assert result.status == "pass", result.message
        node = declared[result.node["node_id"]]
        assert node["Resources"].get(f"portarun/{target}") == 1
        assert result.node["hostname"] and result.node["portarun"] == portarun.__version__
        assert target.split(":")[0] in result.node["sdk_versions"]
    assert len({by_target[t].node["node_id"] for t in targets}) == len(targets)

    crash = by_target["crashy:cpu"]  # killed its worker, was retried once on another node, died again
    assert crash.status == "crash" and "died again" in crash.message
    first, second = re.search(r"died on (\S+), (\S+) \(", crash.message).groups()
    assert first != second  # the retry ran on another node
    assert matrix.worker_restarts >= 2
    assert by_target["hangy:cpu"].status == "timeout"
    gpu, npu = by_target["onnxruntime:cuda"], by_target["openvino:npu"]
    assert gpu.status == "error" and "no node offers onnxruntime:cuda" in gpu.message and "GPU=1" in gpu.message
    assert npu.status == "error" and "portarun/openvino:npu" in npu.message

    document = build_report(matrix, hardware=None, assumptions=default_assumptions())
    validate(document)
    assert len(document["fleet"]["nodes"]) == 3
    assert all(entry["node"]["node_id"] in declared for entry in document["results"]
               if entry["target"] in targets)


def test_placement_rules():
    cluster = {"CPU": 8.0, "GPU": 2.0, "accelerator_type:H100": 1.0, "portarun/openvino:npu": 1.0}
    assert placement_for("onnxruntime:cpu", cluster).needs() == {"CPU": 1.0}
    assert placement_for("onnxruntime:cuda", cluster).needs() == {"GPU": 1.0, "accelerator_type:H100": 0.001}
    assert placement_for("onnxruntime:rocm", cluster).needs() == {"GPU": 1.0}  # no AMD type in this cluster
    assert placement_for("openvino:npu", cluster).needs() == {"portarun/openvino:npu": 1.0}
    assert placement_for("xla:tpu", cluster).needs() == {"TPU": 1.0}
    assert placement_for("openvino:gpu", cluster).unplaceable
    chosen = placement_for("onnxruntime:cuda", cluster, accelerator_types={"onnxruntime:cuda": "A100"})
    assert chosen.ray_options()["accelerator_type"] == "A100"


def test_a_node_with_another_portarun_version_is_refused():
    nodes = [{"node_id": "a" * 20, "hostname": "box-a", "portarun": portarun.__version__},
             {"node_id": "b" * 20, "hostname": "box-b", "portarun": "0.0.1"},
             {"node_id": "c" * 20, "address": "10.0.0.3", "error": "ModuleNotFoundError: No module named 'portarun'"}]
    check_versions(nodes[:1])
    with pytest.raises(portarun.UsageError, match="2 Ray node") as info:
        check_versions(nodes)
    assert "box-b" in str(info.value) and "portarun 0.0.1" in str(info.value) and "10.0.0.3" in str(info.value)
    assert "pip install" in str(info.value)


@pytest.mark.slow
def test_conformance_command_with_ray_writes_one_report_with_nodes(cluster, tmp_path):
    import json

    from click.testing import CliRunner

    from portarun.cli import main

    # the cluster fixture has connected this process, so --ray uses that cluster as it is
    result = CliRunner().invoke(main, ["conformance", "builtin:mlp", "-t", "onnxruntime:cpu", "-t", "openvino:npu",
                                       "-p", "fp32", "--suite", "models", "--runs", "2", "--warmup", "0",
                                       "--ray", "auto", "--placement-timeout", "1", "--out-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output  # openvino:npu: no node offers it
    document = json.loads((tmp_path / "report.json").read_text())
    cpu, npu = document["results"]
    assert cpu["status"] == "pass" and cpu["node"]["sdk_versions"]["onnxruntime"]
    assert cpu["node"]["hardware"]["devices"]
    # priced on the node that ran it (here every node is this machine, so its profile is "local" too)
    assert cpu["cost"]["profile"] == "local" and cpu["cost"]["usd_per_million"]["value"] > 0
    assert npu["status"] == "error" and "no node offers openvino:npu" in npu["message"]
    assert len(document["fleet"]["nodes"]) == 3


def test_ray_option_without_ray_names_the_extra(monkeypatch, tmp_path):
    import sys

    from click.testing import CliRunner

    from portarun.cli import main

    # a plumbing test: hide Ray from the import system to stand in for a machine without the extra
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(main, ["conformance", "builtin:mlp", "-t", "onnxruntime:cpu", "--suite", "models",
                                       "--ray", "local", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "pip install 'portarun[ray]'" in result.output


@pytest.mark.slow
def test_bench_with_ray_runs_the_sweep_on_the_node_that_offers_the_target(cluster):
    import json

    import ray
    from click.testing import CliRunner

    from portarun.cli import main

    if "xla:cpu" not in {str(t) for t in portarun.available_targets()}:
        pytest.skip("xla is not installed here")
    result = CliRunner().invoke(main, ["bench", "builtin:mlp", "-t", "xla:cpu", "--batch", "1,4", "--runs", "2",
                                       "--warmup", "0", "--ray", "auto", "--json", "-"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [r["batch"] for r in document["rows"]] == [1, 4]
    node = {n["NodeID"]: n for n in ray.nodes()}[document["node"]["node_id"]]
    assert node["Resources"].get("portarun/xla:cpu") == 1
    refused = CliRunner().invoke(main, ["bench", "builtin:mlp", "-t", "openvino:npu", "--ray", "auto"])
    assert refused.exit_code == 2 and "no node offers openvino:npu" in refused.output
