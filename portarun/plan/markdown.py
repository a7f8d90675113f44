"""The plan as Markdown, for a CI job summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from .table import headers, rows, summary_lines, thinned


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _cascade(cascade: dict[str, Any]) -> list[str]:
    lines = ["", f"### Cascade: {cascade['small_model']} -> {cascade['large_model']} ({cascade['metric']})", "",
             "| rule | escalated | accuracy | p95 ms | $/1M |", "|---|---|---|---|---|"]
    chosen = cascade.get("chosen") or {}
    points = [cascade["small"], cascade["large"]] + thinned(cascade["points"], chosen, 20)
    for p in points:
        mark = " **(chosen)**" if p is not None and chosen and p["rule"] == chosen["rule"] else ""
        cost = "-" if p["usd_per_1m"] is None else f"${p['usd_per_1m']:.4g}"
        lines.append(f"| {_cell(p['rule'])}{mark} | {p['escalation_rate']:.1%} | {p['accuracy']:.4f} | "
                     f"{p['p95_ms']:.3g} | {cost} |")
    if len(cascade["points"]) > 20:
        lines.append(f"\n{len(cascade['points'])} thresholds swept; 20 shown (the JSON has all).")
    if not chosen:
        lines.append(f"\nNo threshold meets the floor {cascade['floor']}.")
    return lines


def render(document: dict[str, Any]) -> str:
    c = document["constraints"]
    limits = [f"{k} >= {v:g}" if k != "max_abs" else f"{k} <= {v:g}" for k, v in c["floors"].items()]
    limits += [f"{name} <= {c[key]:g} ms" for key, name in (("p99_ms", "p99"), ("ttft_ms", "TTFT"),
                                                             ("tpot_ms", "TPOT")) if c[key] is not None]
    lines = [f"## portarun plan: {document['model']}", "",
             f"Limits: {', '.join(limits) or 'none'}. {len(document['candidates'])} candidates"
             + (f", planned in {document['seconds']:.1f} s." if document.get("seconds") else "."), "",
             "| " + " | ".join(headers(document)) + " |", "|" + "---|" * len(headers(document))]
    lines += ["| " + " | ".join(_cell(x) for x in row) + " |" for row in rows(document)]
    lines += [""] + [f"- {_cell(line.strip())}" for line in summary_lines(document)]
    evals = (document.get("inputs") or {}).get("eval")
    if evals:
        lines.append(f"- eval set: {_cell(evals)}")
    if document.get("cascade"):
        lines += _cascade(document["cascade"])
    return "\n".join(lines) + "\n"


def write_markdown(document: dict[str, Any], path: str | Path) -> Path:
    atomic_write_text(path, render(document))
    return Path(path)


__all__ = ["render", "write_markdown"]
