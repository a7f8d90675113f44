"""JUnit XML: one testcase per case x target x precision, so CI systems show the matrix as tests.

A failing parity check becomes a <failure> carrying the metric and the tolerance;
an error, crash or timeout becomes an <error>; a skip carries its reason.
Node-suite counts become one testcase per target in a second suite.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from portarun.plugin import atomic_write_bytes


def junit_tree(document: dict[str, Any]) -> ET.Element:
    root = ET.Element("testsuites", name="portarun conformance")
    suite = ET.SubElement(root, "testsuite", name="portarun.conformance")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for entry in document["results"]:
        seconds = (entry.get("wall_time") or {}).get("value") or 0.0
        total_time += seconds
        case = ET.SubElement(suite, "testcase", classname=f"{entry['target']}.{entry['precision']}",
                             name=entry["case"], time=f"{seconds:.3f}")
        counts["tests"] += 1
        status = entry["status"]
        if status == "fail":
            counts["failures"] += 1
            element = ET.SubElement(case, "failure", message=_failure_message(entry), type="parity")
            element.text = _details(entry)
        elif status in ("error", "crash", "timeout"):
            counts["errors"] += 1
            element = ET.SubElement(case, "error", message=entry["message"][:500], type=status)
            element.text = entry["message"]
        elif status == "skip":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=entry["message"][:500])
    suite.attrib.update({k: str(v) for k, v in counts.items()}, time=f"{total_time:.3f}")
    node_suite = document.get("node_suite") or {}
    if node_suite.get("targets"):
        nodes = ET.SubElement(root, "testsuite", name="portarun.onnx-node-suite")
        n_fail = 0
        for target, counts_for in node_suite["targets"].items():
            case = ET.SubElement(nodes, "testcase", classname="onnx-node", name=target)
            text = (f"{counts_for['passed']}/{counts_for['total']} node cases pass "
                    f"({counts_for['failed']} fail, {counts_for['errors']} error, {counts_for['skipped']} skip)")
            if counts_for.get("problems"):
                n_fail += 1
                ET.SubElement(case, "error", message="; ".join(counts_for["problems"])[:500], type="node-suite")
            ET.SubElement(case, "system-out").text = text
        nodes.attrib.update(tests=str(len(node_suite["targets"])), failures="0", errors=str(n_fail), skipped="0")
    return root


def _failure_message(entry: dict[str, Any]) -> str:
    metrics, tol = entry.get("metrics") or {}, entry.get("tolerance") or {}
    parts = [entry["message"][:300]]
    if metrics:
        parts.append(f"max_abs={metrics['max_abs']['value']:.3g} cosine={metrics['cosine']['value']:.6f} "
                     f"within={metrics['within']['value']:.4f}")
    parts.append(f"tolerance rtol={tol.get('rtol')} atol={tol.get('atol')} min_cosine={tol.get('min_cosine')} "
                 f"min_within={tol.get('min_within')}")
    return "; ".join(parts)


def _details(entry: dict[str, Any]) -> str:
    lines = [entry["message"]]
    localization = entry.get("localization")
    if localization:
        lines.append(localization.get("summary") or localization.get("message", ""))
    return "\n".join(lines)


def write_junit(document: dict[str, Any], path: str | Path) -> Path:
    tree = junit_tree(document)
    ET.indent(tree)
    atomic_write_bytes(path, ET.tostring(tree, encoding="utf-8", xml_declaration=True))
    return Path(path)
