"""PNG plots (matplotlib, Agg backend: no display needed on CI).

``plot_report``: cost per 1M tokens (items) against accuracy per target x
precision, accuracy drawn as 1 - cosine vs the reference on a log axis (cosines
of passing cells are all 0.99999...), plus median latency bars with p99 whiskers.
``plot_sweep``: the batch sweep, cost per 1M tokens falling and latency rising
with batch, with the cheapest batch that meets the latency limit marked.
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


def plot_report(document: dict[str, Any], path: str | Path) -> Path:
    """Left: cost per 1M against 1 - cosine (colour: target, marker: precision, label: model).
    Right: median latency per cell as horizontal bars with p99 whiskers (green pass, red fail)."""
    plt = _pyplot()
    measured = [e for e in document["results"] if e.get("performance")]
    height = max(5.5, 0.22 * len(measured) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, height), gridspec_kw={"width_ratios": [1.1, 1]})
    targets = sorted({e["target"] for e in measured})
    colors = {t: plt.get_cmap("tab10")(n % 10) for n, t in enumerate(targets)}
    seen: set[tuple[str, str]] = set()
    priced = 0
    for e in measured:
        cosine = ((e.get("metrics") or {}).get("cosine") or {}).get("value")
        cost = ((e.get("cost") or {}).get("usd_per_million") or {}).get("value")
        if cosine is None or cost is None:
            continue
        priced += 1
        key = (e["target"], e["precision"])
        x = max(1.0 - cosine, FLOOR)
        left.scatter([x], [cost], color=colors[e["target"]], marker=PRECISION_MARKERS.get(e["precision"], "o"),
                     s=55, label=f"{e['target']} {e['precision']}" if key not in seen else None,
                     edgecolors="black" if not e["passed"] else "none")
        seen.add(key)
        left.annotate(e["case"].replace("builtin:", ""), (x, cost), textcoords="offset points", xytext=(4, 3),
                      fontsize=6, color="dimgray")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel(f"1 - cosine vs reference (lower is more accurate; exact agreement drawn at {FLOOR:g})")
    left.set_ylabel("USD per 1M tokens (sequence models) or items (others)")
    left.set_title("Cost against accuracy (colour: target, marker: precision)")
    if priced:
        left.legend(fontsize=6, ncol=2, loc="best")
    else:
        left.text(0.5, 0.5, "no priced cells\n(pass --hardware or --price-per-hour)", ha="center",
                  va="center", transform=left.transAxes)
    labels = [f"{e['case'].replace('builtin:', '')}  {e['target']} {e['precision']}" for e in measured]
    medians = [e["performance"]["median_latency"]["value"] for e in measured]
    p99 = [e["performance"]["p99_latency"]["value"] for e in measured]
    positions = list(range(len(measured)))
    right.barh(positions, medians, color=["tab:green" if e["passed"] else "tab:red" for e in measured],
               xerr=[[0] * len(medians), [max(p - m, 0) for p, m in zip(p99, medians)]], capsize=2)
    right.set_yticks(positions, labels, fontsize=6)
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlabel("latency, ms (bar: median, whisker: p99)")
    right.set_title("Latency per cell (green: pass, red: fail)")
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_sweep(rows: list[dict[str, Any]], path: str | Path, *, title: str, max_latency_ms: float | None) -> Path:
    """``rows``: dicts with batch, median_ms, usd_per_million (may be None), chosen (bool)."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(7, 4.5))
    batches = [r["batch"] for r in rows]
    axis.plot(batches, [r["median_ms"] for r in rows], "o-", color="tab:blue", label="median latency (ms)")
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("median latency, ms", color="tab:blue")
    if max_latency_ms is not None:
        axis.axhline(max_latency_ms, color="tab:blue", linestyle=":", label=f"limit {max_latency_ms:g} ms")
    costs = [r.get("usd_per_million") for r in rows]
    if any(c is not None for c in costs):
        other = axis.twinx()
        other.plot(batches, costs, "s-", color="tab:orange", label="USD per 1M")
        other.set_ylabel("USD per 1M tokens (items)", color="tab:orange")
        other.set_yscale("log")
        for r in rows:
            if r.get("chosen"):
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
