"""Write the README's node-suite counts and main-job times from a conformance run's report.json.

The README states numbers from a run, never typed by hand: this rewrites the text between the
``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` markers: ``main-job`` and ``node-suite`` from the
main job's report, ``node-suite-full`` from a ``--suite onnx-node --node-suite full`` run's.

    portarun conformance --out-dir reports/conformance
    python tools/readme_counts.py reports/conformance/report.json --load "$(cut -d' ' -f1 /proc/loadavg)"
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _machine(env: dict) -> str:
    return env.get("cpu", "this CPU") + (f", {env['cpu_isa']}" if env.get("cpu_isa") else "")


def node_suite_text(document: dict) -> str:
    suite = document.get("node_suite") or {}
    targets = suite.get("targets") or {}
    if not targets:
        return "No ONNX node-suite counts recorded yet."
    env = document.get("environment", {})
    scope = (f"the default sample ({suite.get('cases_run')} of the {suite.get('cases_in_suite'):,} cases generated "
             "from the installed onnx: every op type, 2 cases each)" if suite.get("mode") == "sample"
             else f"all {suite.get('cases_in_suite', '?'):,} cases generated from the installed onnx")
    counts = ", ".join(f"{target} {c['passed']:,} pass ({c['failed']} fail, {c['errors']} error)"
                       for target, c in sorted(targets.items(), key=lambda item: -item[1]["passed"]))
    return (f"ONNX backend node tests, {scope}, rtol {suite.get('rtol'):g}, atol {suite.get('atol'):g}: {counts}; "
            f"measured on {_machine(env)} on {document.get('created', '')[:10]}.")


def main_job_text(document: dict, load: str | None) -> str:
    summary = document.get("summary", {})
    total = (summary.get("total_wall_time") or {}).get("value")
    node = ((document.get("node_suite") or {}).get("wall_time") or {}).get("value")
    env = document.get("environment", {})
    if total is None:
        return ""
    cores = env.get("cpu_count") or env.get("cores") or "?"
    return (f"A cold run (empty cache) of `portarun conformance` took {total:.0f} s on {_machine(env)} "
            f"({cores} cores{f', load average {load} from other work' if load else ''}): the model matrix "
            f"{total - (node or 0):.0f} s, the node-suite sample {node or 0:.0f} s.")


def replace(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end: {name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README has no <!-- generated: {name} --> ... <!-- end: {name} --> markers")
    return pattern.sub(lambda m: m.group(1) + (body + "\n" if body else "") + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--load", help="the load average during the run, to say how busy the machine was")
    args = parser.parse_args()
    document = json.loads(args.report.read_text())
    text = README.read_text()
    if (document.get("node_suite") or {}).get("mode") == "full":  # `--suite onnx-node --node-suite full`
        suite_time = ((document["node_suite"].get("wall_time") or {}).get("value") or 0)
        text = replace(text, "node-suite-full", node_suite_text(document)[:-1]
                       + f" ({suite_time:.0f} s cold{f', load average {args.load}' if args.load else ''}).")
    else:
        text = replace(text, "node-suite", node_suite_text(document))
        text = replace(text, "main-job", main_job_text(document, args.load))
    README.write_text(text)


if __name__ == "__main__":
    main()
