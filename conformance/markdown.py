"""Markdown summary for a CI step summary: verdict, the matrix table, failures with their localization,
node-suite counts, cost inputs and baseline regressions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from portarun.plugin import atomic_write_text


def _num(value: float | None, fmt: str = ".3g") -> str:
    return "–" if value is None else format(value, fmt)


def _val(entry: dict[str, Any] | None, *keys: str) -> float | None:
    for key in keys:
        if entry is None:
            return None
        entry = entry.get(key)
    return entry if isinstance(entry, (int, float)) else None


def matrix_rows(document: dict[str, Any]) -> list[list[str]]:
    rows = []
    for e in document["results"]:
        m, p, c = e.get("metrics"), e.get("performance"), e.get("cost")
        throughput = _val(p, "tokens_per_second", "value")
        unit = "tok/s"
        if throughput is None:
            throughput, unit = _val(p, "throughput", "value"), "items/s"
        cost = _val(c, "usd_per_million", "value")
        rows.append([e["target"], e["case"], e["precision"], e["status"].upper(),
                     _num(_val(m, "max_abs", "value")), _num(_val(m, "cosine", "value"), ".6f"),
                     _num(_val(p, "median_latency", "value"), ".3f"), _num(_val(p, "p99_latency", "value"), ".3f"),
                     f"{_num(throughput, '.4g')} {unit}" if throughput is not None else "–",
                     f"${cost:.4g}" if cost is not None else "–",
                     _num(_val(c, "roofline", "achieved_fraction", "value"), ".2%") if c else "–"])
    return rows


HEADERS = ["target", "model", "precision", "status", "max abs", "cosine", "median ms", "p99 ms", "throughput",
           "$/1M", "of roofline"]


def markdown_summary(document: dict[str, Any]) -> str:
    summary = document["summary"]
    verdict = "PASSED" if summary["passed"] else "FAILED"
    counts = ", ".join(f"{n} {k}" for k, n in sorted(summary["counts"].items()))
    lines = [f"# portarun conformance: {verdict}", "",
             f"{summary['cells']} cells ({counts}) in {summary['wall_time']['value']:.1f} s"
             + (f" (whole run {summary['total_wall_time']['value']:.1f} s)" if summary.get("total_wall_time") else "")
             + " on "
             f"{document['environment']['cpu']} ({document['environment']['cpu_count']} cores), "
             f"portarun {document['environment']['portarun']}.", "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in matrix_rows(document)]
    problems = [e for e in document["results"] if not e["passed"]]
    if problems:
        lines += ["", "## Failures", ""]
        for e in problems:
            lines.append(f"- **{e['case']} on {e['target']} {e['precision']}** ({e['status']}): {e['message']}")
            if e.get("localization"):
                lines.append(f"  - localization: {e['localization'].get('summary') or e['localization'].get('message')}")
    skips = sorted({e["message"] for e in document["results"] if e["status"] == "skip"})
    if skips:
        lines += ["", "## Skipped (with reasons)", ""] + [f"- {s}" for s in skips]
    node_suite = document.get("node_suite")
    if node_suite and node_suite.get("targets"):
        scope = (f"{node_suite['mode']}: {node_suite.get('cases_run', '?')} of {node_suite.get('cases_in_suite', '?')} "
                 "cases, " if node_suite.get("mode") else "")
        lines += ["", f"## ONNX node suite ({scope}rtol {node_suite['rtol']:g}, atol {node_suite['atol']:g})", "",
                  "| target | passed | failed | errors | skipped | total | case-seconds | problems |",
                  "|---|---|---|---|---|---|---|---|"]
        for target, c in node_suite["targets"].items():
            lines.append(f"| {target} | {c['passed']} | {c['failed']} | {c['errors']} | {c['skipped']} | "
                         f"{c['total']} | {'cached' if c.get('cached') else format(c['seconds'], '.0f')} | {'; '.join(c.get('problems', [])) or '-'} |")
    elif node_suite and node_suite.get("note"):
        lines += ["", f"ONNX node suite not run: {node_suite['note']}"]
    lines += ["", "## Cost inputs", ""]
    a = document["hardware"]["assumptions"]
    lines.append(f"$/1M = $/hour / (throughput x 3600) x 1e6; $/hour = capex / (years x 8760 x utilization) + "
                 f"W/1000 x PUE x $/kWh, or the cloud price. Utilization {a['utilization']}, PUE {a['pue']}, "
                 f"${a['kwh_price_usd']}/kWh, {a['lifetime_years']} years"
                 + (f", user price ${a['price_per_hour_usd']}/h" if a.get("price_per_hour_usd") is not None else "")
                 + ".")
    seen = set()
    for e in document["results"]:
        c = e.get("cost")
        if not c or c["profile"] in seen:
            continue
        seen.add(c["profile"])
        watts = (c["inputs"].get("watts") or {})
        lines.append(f"- profile `{c['profile']}`: basis {c['basis']}, ${_num(c['usd_per_hour']['value'], '.4g')}/h"
                     + (f"; watts {watts.get('value')} [{watts.get('tag')}] ({watts.get('source')})" if watts else "")
                     + (f"; {c['note']}" if c.get("note") else ""))
    lines.append("- of roofline: achieved throughput / memory roofline (bandwidth x tokens per pass / weight bytes, "
                 "tokens/s <= bandwidth / (weight + KV bytes per token) at one token per pass), at most 100 %; "
                 "'–' where the weights fit in the CPU's last-level cache (bandwidth is not the limit) or the "
                 "rate beats the roofline (the report's roofline note says which).")
    for section in document.get("decode_cost") or ():
        from .decode_cost import decode_cost_markdown

        lines += [""] + decode_cost_markdown(section)
    baseline = document.get("baseline")
    if baseline:
        lines += ["", f"## Against baseline `{baseline['path']}` (threshold {baseline['threshold']:.0%})", ""]
        if baseline["regressions"]:
            lines += [f"- {r['case']} on {r['target']} {r['precision']}: **{r['kind']}**: {r['message']}"
                      for r in baseline["regressions"]]
        else:
            lines.append("No regressions.")
    return "\n".join(lines) + "\n"


def write_markdown(document: dict[str, Any], path: str | Path) -> Path:
    atomic_write_text(path, markdown_summary(document))
    return Path(path)
