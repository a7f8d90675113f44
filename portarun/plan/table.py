"""Rows of the plan table from the plan document: shared by the terminal, Markdown and the plot."""

from __future__ import annotations

from typing import Any


def _num(value: Any, fmt: str = ".4g", prefix: str = "") -> str:
    return "-" if value is None else f"{prefix}{value:{fmt}}"


def latency_text(entry: dict[str, Any]) -> str:
    if entry["kind"] == "decoder":
        return f"{_num(entry['ttft_ms'], '.3g')} / {_num(entry['tpot_ms'], '.3g')}"
    latency = entry.get("latency_ms") or {}
    return f"{_num(latency.get('median'), '.3g')} / {_num(latency.get('p99'), '.3g')}"


def verdict(entry: dict[str, Any]) -> str:
    if entry["feasible"]:
        return "RECOMMENDED" if entry["recommended"] else ("ok (migration)" if entry.get("migration") else "ok")
    return "; ".join(r["text"] for r in entry["reasons"])


def source_text(entry: dict[str, Any]) -> str:
    source = entry["source"]
    if source["kind"] == "measured":
        return "here"
    return f"{source.get('where') or '?'} @ {source.get('when') or '?'}"


def _several_models(document: dict[str, Any]) -> bool:
    return len({e.get("model") for e in document["candidates"]}) > 1


def headers(document: dict[str, Any]) -> list[str]:
    metric = document["pareto"]["accuracy_metric"]
    decoder = any(e["kind"] == "decoder" for e in document["candidates"])
    unit = next((e["unit"] for e in document["candidates"]), "tokens")
    model = ["model"] if _several_models(document) else []
    return ["#", *model, "target", "prec", "batch", "hardware", metric,
            "TTFT / TPOT ms" if decoder else "median / p99 ms", "tokens/s", f"$/1M {unit}", "verdict", "measured"]


def rows(document: dict[str, Any]) -> list[list[str]]:
    metric = document["pareto"]["accuracy_metric"]
    out = []
    for entry in document["candidates"]:
        per_second = entry["tokens_per_s"] if entry["unit"] == "tokens" else entry["items_per_s"]
        model = [entry.get("model") or "-"] if _several_models(document) else []
        out.append([str(entry["id"]), *model, entry["target"], entry["precision"], str(entry["batch"]),
                    entry["hardware"] or "-", _num(entry["accuracy"].get(metric), ".6g"), latency_text(entry),
                    _num(per_second, ".4g"), _num(entry["usd_per_1m_tokens"], ".4g", "$"), verdict(entry),
                    source_text(entry)])
    return out


def summary_lines(document: dict[str, Any]) -> list[str]:
    """The recommendation, the migration option, the fleet, or the closest misses: a few lines of text."""
    lines = []
    rec, mig = document["recommended"], document["migration"]
    if rec:
        lines.append(f"recommended: #{rec['id']} {rec['label']} ({rec['why']})")
    else:
        misses = [document["candidates"][i] for i in document["closest_misses"]]
        lines.append("no feasible candidate; closest misses:")
        lines += [f"  #{e['id']} {e['target']} {e['precision']} b{e['batch']}: {verdict(e)}" for e in misses]
    if mig:
        lines.append(f"migration option: #{mig['id']} {mig['label']} ({mig['why']})")
    elif rec:
        lines.append("migration option: none (no feasible candidate on another backend or hardware)")
    replicas = document.get("replicas")
    if replicas:
        monthly = replicas["monthly_usd"]
        lines.append(f"for {replicas['requests_per_s']:g} requests/s: {replicas['replicas'] or '?'} replicas "
                     f"({_num(replicas['per_replica_requests_per_s'], '.4g')} requests/s each), "
                     f"{_num(monthly, ',.2f', '$')}/month" + (f" ({replicas['note']})" if replicas.get("note") else ""))
    lines += cascade_lines(document.get("cascade"))
    pareto = document["pareto"]
    lines.append(f"Pareto front cost vs {pareto['accuracy_metric']}: "
                 f"{', '.join('#' + str(i) for i in pareto['cost_vs_accuracy']) or '-'}; cost vs latency: "
                 f"{', '.join('#' + str(i) for i in pareto['cost_vs_latency']) or '-'}")
    lines += price_lines(document)
    lines += document.get("notes", [])
    return lines


def price_lines(document: dict[str, Any]) -> list[str]:
    """Which profile priced what, on which basis and at what $/hour, and the cost assumptions."""
    seen: dict[tuple[Any, Any, Any], None] = {}
    for entry in document["candidates"]:
        cost = entry.get("cost") or {}
        seen[(entry["hardware"], cost.get("basis"), entry["usd_per_hour"])] = None
    prices = "; ".join(f"{h or 'no profile'}: {b or '?'} {_num(p, '.4g', '$')}/h" for h, b, p in seen)
    lines = [f"priced with {prices}"] if seen else []
    a = (document.get("inputs") or {}).get("assumptions")
    if a:
        lines.append(f"cost assumptions: utilization {a['utilization']}, PUE {a['pue']}, ${a['kwh_price_usd']}/kWh, "
                     f"{a['lifetime_years']} years" + (f", price {a['price_per_hour_usd']} $/h"
                                                         if a.get("price_per_hour_usd") is not None else ""))
    return lines


def cascade_lines(cascade: dict[str, Any] | None) -> list[str]:
    """The chosen cascade threshold against each model alone."""
    if not cascade:
        return []
    chosen, small, large = cascade["chosen"], cascade["small"], cascade["large"]
    alone = (f"small alone {small['accuracy']:.4f} at {_num(small['usd_per_1m'], '.4g', '$')}, "
             f"large alone {large['accuracy']:.4f} at {_num(large['usd_per_1m'], '.4g', '$')}")
    if chosen is None:
        return [f"cascade: no threshold meets the floor {cascade['floor']} ({alone})"]
    saving = ""
    if chosen["usd_per_1m"] is not None and large["usd_per_1m"]:
        change = chosen["usd_per_1m"] / large["usd_per_1m"] - 1
        saving = f", {abs(change):.0%} {'cheaper' if change < 0 else 'dearer'} than the large model alone"
    return [f"cascade: escalate when {chosen['rule']}: {chosen['escalation_rate']:.1%} escalated, "
            f"{cascade['metric']} {chosen['accuracy']:.4f}, p95 {chosen['p95_ms']:.3g} ms, "
            f"{_num(chosen['usd_per_1m'], '.4g', '$')} per 1M{saving} ({alone})"]


def thinned(points: list[dict[str, Any]], chosen: dict[str, Any] | None, limit: int = 12) -> list[dict[str, Any]]:
    """At most ``limit`` sweep points, evenly spaced, always keeping the chosen one."""
    if len(points) <= limit:
        return list(points)
    step = (len(points) - 1) / (limit - 1)
    keep = {round(i * step) for i in range(limit)}
    return [p for i, p in enumerate(points) if i in keep or (chosen and p["rule"] == chosen["rule"])]


__all__ = ["cascade_lines", "price_lines", "thinned", "headers", "latency_text", "rows", "source_text", "summary_lines", "verdict"]
