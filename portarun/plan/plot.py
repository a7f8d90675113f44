"""The plan as a picture: cost against accuracy (floor line) and cost against latency (SLO line).

Feasible candidates are coloured by backend, infeasible ones grey, the recommendation
circled. The cost axis is logarithmic only when every price is positive and they span
more than 20x: a zero-cost cell (a free price) would otherwise break a log scale.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_bytes
from ..errors import UsageError


def _cost_scale(ax: Any, costs: list[float]) -> None:
    positive = [c for c in costs if c > 0]
    if costs and len(positive) == len(costs) and max(positive) / min(positive) > 20:
        ax.set_xscale("log")


def _panel(ax: Any, points: list[dict[str, Any]], y_key: Any, ylabel: str, limit: float | None,
           limit_label: str, colours: dict[str, Any]) -> None:
    costs = []
    for entry in points:
        y = y_key(entry)
        cost = entry["usd_per_1m_tokens"]
        if y is None or cost is None:
            continue
        costs.append(cost)
        colour = colours[entry["backend"]] if entry["feasible"] else "0.75"
        ax.scatter([cost], [y], color=colour, s=30, zorder=3, edgecolors="none")
        if entry["recommended"]:
            ax.scatter([cost], [y], s=160, facecolors="none", edgecolors="black", linewidths=1.5, zorder=4)
        ax.annotate(f"{entry['precision']} b{entry['batch']}", (cost, y), fontsize=6, xytext=(3, 3),
                    textcoords="offset points", color="0.3")
    if limit is not None:
        ax.axhline(limit, color="crimson", linestyle="--", linewidth=1, label=limit_label)
        ax.legend(fontsize=7, loc="best")
    _cost_scale(ax, costs)
    ax.set_xlabel("$ per 1M " + (points[0]["unit"] if points else "tokens"))
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def plot_plan(document: dict[str, Any], path: str | Path) -> Path:
    """Write a PNG with both panels to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UsageError("the plan plot needs matplotlib", hint="pip install 'portarun[plot]'") from exc
    entries = document["candidates"]
    metric = document["pareto"]["accuracy_metric"]
    limits = document["constraints"]
    decoder = any(e["kind"] == "decoder" for e in entries)
    backends = sorted({e["backend"] for e in entries})
    palette = plt.get_cmap("tab10")
    colours = {name: palette(i % 10) for i, name in enumerate(backends)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    _panel(left, entries, lambda e: e["accuracy"].get(metric), metric, limits["floors"].get(metric),
           f"floor {metric} {limits['floors'].get(metric)}", colours)
    slo = limits["tpot_ms"] if decoder else limits["p99_ms"]
    name = "TPOT ms" if decoder else "p99 latency ms"
    _panel(right, entries, (lambda e: e["tpot_ms"]) if decoder else (lambda e: (e["latency_ms"] or {}).get("p99")),
           name, slo, f"SLO {slo} ms", colours)
    unpriced = sum(1 for e in entries if e["usd_per_1m_tokens"] is None)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[b], label=b) for b in backends]
    handles.append(plt.Line2D([], [], marker="o", linestyle="", color="0.75", label="infeasible"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.94), ncol=len(handles), fontsize=8)
    fig.suptitle(f"portarun plan: {document['model']}" + (f" ({unpriced} unpriced not shown)" if unpriced else ""),
                 y=0.99, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


__all__ = ["plot_plan"]
