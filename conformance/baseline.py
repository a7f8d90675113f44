"""Compare a report with an earlier one: parity regressions, and latency or cost regressions beyond a
relative threshold. A cell matches its baseline by (case, target, precision)."""

from __future__ import annotations

from typing import Any

DEFAULT_THRESHOLD = 0.25  # 2-core CI runners are noisy: only flag latency/cost changes above 25 %
COSINE_SLACK = 1e-4  # a cosine drop larger than this is a parity regression even if still within tolerance


def _key(entry: dict[str, Any]) -> tuple[str, str, str]:
    return entry["case"], entry["target"], entry["precision"]


def _value(entry: dict[str, Any], *keys: str) -> float | None:
    node: Any = entry
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, (int, float)) else None


def find_regressions(current: dict[str, Any], baseline: dict[str, Any], *,
                     threshold: float = DEFAULT_THRESHOLD) -> list[dict[str, Any]]:
    old = {_key(e): e for e in baseline.get("results", [])}
    regressions = []

    def flag(entry: dict[str, Any], kind: str, message: str) -> None:
        regressions.append({"case": entry["case"], "target": entry["target"], "precision": entry["precision"],
                            "kind": kind, "message": message})

    for entry in current["results"]:
        before = old.get(_key(entry))
        if before is None:
            continue
        if before["status"] == "pass" and entry["status"] != "pass":
            flag(entry, "parity", f"was pass, now {entry['status']}: {entry['message']}")
            continue
        old_cos, new_cos = _value(before, "metrics", "cosine", "value"), _value(entry, "metrics", "cosine", "value")
        if old_cos is not None and new_cos is not None and new_cos < old_cos - COSINE_SLACK:
            flag(entry, "parity", f"cosine fell from {old_cos:.6f} to {new_cos:.6f}")
        for kind, keys, unit in (("latency", ("performance", "median_latency", "value"), "ms"),
                                 ("cost", ("cost", "usd_per_million", "value"), "USD/1M")):
            was, now = _value(before, *keys), _value(entry, *keys)
            if was and now and now > was * (1 + threshold):
                flag(entry, kind, f"{kind} rose {now / was - 1:.0%} ({was:.4g} -> {now:.4g} {unit}), "
                                  f"threshold {threshold:.0%}")
    old_nodes = (baseline.get("node_suite") or {}).get("targets", {})
    for target, counts in ((current.get("node_suite") or {}).get("targets") or {}).items():
        before = old_nodes.get(target)
        if before and counts["total"] == before["total"] and counts["passed"] < before["passed"]:
            regressions.append({"case": "onnx-node-suite", "target": target, "precision": "fp32", "kind": "parity",
                                "message": f"node cases passing fell from {before['passed']} to {counts['passed']} "
                                           f"of {counts['total']}"})
    return regressions
