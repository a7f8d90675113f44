"""PNG plots (matplotlib, Agg backend: no display needed on CI).

``plot_report``: one row per model (a model's unit, tokens or items, is never mixed
with another's): cost per 1M against accuracy, drawn as 1 - cosine vs the reference
on a log axis (cosines of passing cells are all 0.99999...), each point labelled
with target and precision, and that model's median latency bars with p99 whiskers.
``plot_sweep``: the batch sweep, cost per 1M falling and median/p99 latency rising
with batch, the latency limit (SLO) drawn, the cheapest batch meeting it marked.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from portarun import UsageError
from portarun.plugin import atomic_write_bytes

FLOOR = 1e-12  # 1 - cosine below this is drawn at the floor (exact agreement)


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise UsageError("plots need matplotlib", hint="pip install 'portarun[plot]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^", "int8-weight": "v", "int4-weight": "X"}


def _value(entry: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        entry = (entry or {}).get(key) or {}
    return entry if not isinstance(entry, dict) else entry.get("value")


def _scale(axis: Any, which: str, values: list[float]) -> None:
    """Log scale when every value is positive and they span over a decade (cost and latency often do),
    else linear: a zero-cost cell must not crash the plot ("Data cannot be log-scaled")."""
    if values and all(v > 0 for v in values) and max(values) / min(values) > 10:
        getattr(axis, f"set_{which}scale")("log")


def _labels_without_overlap(axis: Any, points: list[tuple[float, float, str, Any]]) -> None:
    """Label each point in a column right of the data, ordered by height and evenly spaced in axes
    coordinates, with a thin line to its point: labels never overlap, however close the points are."""
    if not points:
        return
    transform = axis.transData + axis.transAxes.inverted()
    placed = sorted(points, key=lambda p: transform.transform((p[0], p[1]))[1])
    n = len(placed)
    for rank, (x, y, text, color) in enumerate(placed):
        label_y = (rank + 0.5) / n
        axis.annotate(text, xy=(x, y), xycoords="data", xytext=(1.03, label_y), textcoords="axes fraction",
                      fontsize=7, color=color, va="center",
                      arrowprops={"arrowstyle": "-", "color": color, "lw": 0.5, "alpha": 0.6})


def _cost_panel(axis: Any, cells: list[dict[str, Any]], colors: dict[str, Any]) -> None:
    points, costs, errors = [], [], []
    unit = "items"
    for e in cells:
        cosine, cost = _value(e, "metrics", "cosine"), _value(e, "cost", "usd_per_million")
        if cosine is None or cost is None:
            continue
        unit = (e.get("cost") or {}).get("unit") or unit
        x = max(1.0 - cosine, FLOOR)
        axis.scatter([x], [cost], color=colors[e["target"]], marker=PRECISION_MARKERS.get(e["precision"], "o"), s=45,
                     edgecolors="black" if not e["passed"] else "none", zorder=3)
        points.append((x, cost, f"{e['target']} {e['precision']}" + ("" if e["passed"] else " FAIL"),
                       colors[e["target"]]))
        costs.append(cost)
        errors.append(x)
    if not points:
        axis.text(0.5, 0.5, "no priced cells", ha="center", va="center", transform=axis.transAxes)
        return
    axis.set_xscale("log")
    _scale(axis, "y", costs)
    if min(errors) == max(errors):  # one point, or all equally exact: give the log axis a decade
        axis.set_xlim(min(errors) / 10, max(errors) * 10)
    axis.set_xlabel(f"1 - cosine vs reference (exact drawn at {FLOOR:g})", fontsize=8)
    axis.set_ylabel(f"USD per 1M {unit}", fontsize=8)
    _labels_without_overlap(axis, points)


def _latency_panel(axis: Any, cells: list[dict[str, Any]]) -> None:
    labels = [f"{e['target']} {e['precision']}" for e in cells]
    medians = [_value(e, "performance", "median_latency") or 0.0 for e in cells]
    p99 = [_value(e, "performance", "p99_latency") or m for e, m in zip(cells, medians)]
    positions = list(range(len(cells)))
    axis.barh(positions, medians, color=["tab:green" if e["passed"] else "tab:red" for e in cells],
              xerr=[[0] * len(medians), [max(p - m, 0) for p, m in zip(p99, medians)]], capsize=2)
    axis.set_yticks(positions, labels, fontsize=7)
    axis.invert_yaxis()
    _scale(axis, "x", medians)
    axis.set_xlabel("latency, ms (bar: median, whisker: p99; green pass, red fail)", fontsize=8)


def plot_report(document: dict[str, Any], path: str | Path) -> Path:
    """One row per model: left, cost per 1M tokens (items for models without a sequence axis) against
    1 - cosine, each point labelled with its target and precision; right, that model's latency bars.
    Colour: target; marker: precision; black edge: a failed cell."""
    plt = _pyplot()
    measured = [e for e in document["results"] if e.get("performance")]
    models = sorted({e["case"] for e in measured})
    targets = sorted({e["target"] for e in measured})
    colors = {t: plt.get_cmap("tab10")(n % 10) for n, t in enumerate(targets)}
    if not models:
        fig, axis = plt.subplots(figsize=(7, 2.5))
        axis.axis("off")
        axis.text(0.5, 0.5, "no cell was measured (every cell failed before timing, or none ran)",
                  ha="center", va="center")
        try:
            return _save(fig, path)
        finally:
            plt.close(fig)
    rows = [[e for e in measured if e["case"] == m] for m in models]
    heights = [max(2.6, 0.28 * len(cells) + 1.2) for cells in rows]
    fig, axes = plt.subplots(len(models), 2, figsize=(15, sum(heights)), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": heights, "width_ratios": [1.25, 1]})
    for (left, right), model, cells in zip(axes, models, rows):
        _cost_panel(left, cells, colors)
        left.set_title(f"{model.replace('builtin:', '')}: cost against accuracy", fontsize=9, loc="left")
        _latency_panel(right, cells)
        right.set_title(f"{model.replace('builtin:', '')}: latency", fontsize=9, loc="left")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_sweep(rows: list[dict[str, Any]], path: str | Path, *, title: str, max_latency_ms: float | None) -> Path:
    """``rows``: dicts with batch, median_ms, p99_ms, usd_per_million (may be None), chosen (bool).
    Left axis: median and p99 latency with the latency limit (SLO); right axis: cost per 1M."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(7.5, 4.5))
    batches = [r["batch"] for r in rows]
    medians = [r["median_ms"] for r in rows]
    p99 = [r.get("p99_ms", r["median_ms"]) for r in rows]
    axis.plot(batches, medians, "o-", color="tab:blue", label="median latency")
    axis.plot(batches, p99, "o--", color="tab:blue", alpha=0.6, label="p99 latency")
    if len(set(batches)) > 1 and all(b > 0 for b in batches):
        axis.set_xscale("log", base=2)
    axis.set_xticks(batches, [str(b) for b in batches])
    axis.set_xlabel("batch size")
    axis.set_ylabel("latency, ms", color="tab:blue")
    if max_latency_ms is not None:
        axis.axhline(max_latency_ms, color="tab:red", linestyle=":", label=f"SLO {max_latency_ms:g} ms (median)")
    costs = [r.get("usd_per_million") for r in rows]
    if any(c is not None for c in costs):
        other = axis.twinx()
        shown = [(b, c) for b, c in zip(batches, costs) if c is not None]
        other.plot([b for b, _ in shown], [c for _, c in shown], "s-", color="tab:orange", label="USD per 1M")
        other.set_ylabel("USD per 1M tokens (items)", color="tab:orange")
        _scale(other, "y", [c for _, c in shown])
        for r in rows:
            if r.get("chosen") and r.get("usd_per_million") is not None:
                other.scatter([r["batch"]], [r["usd_per_million"]], s=220, facecolors="none", edgecolors="red",
                              linewidths=2, label=f"chosen: batch {r['batch']}", zorder=5)
        other.legend(loc="upper right", fontsize=8)
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title(title)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
