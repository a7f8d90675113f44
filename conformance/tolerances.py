"""Tolerances per precision, with justified per-backend / per-case / per-op overrides, from one data file.

``data/tolerances.json`` holds one base tolerance per precision and a list of
overrides. An override matches on every selector it names (``precision``,
``backend``, ``case``, ``op``, and ``cpu_without``: a CPU feature of
``portarun.plugin.cpu_features()`` such as ``vnni`` that this machine lacks) and must carry a ``why``: a looser number with no
reason is how conformance suites rot. The most specific match wins (more
selectors), later entries break ties.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

from portarun import Precision, Tolerance, UsageError

SELECTORS = ("precision", "backend", "case", "op", "cpu_without")
NUMBERS = ("rtol", "atol", "min_cosine", "min_within")


@functools.lru_cache(maxsize=4)
def load_table(path: str | None = None) -> dict[str, Any]:
    """The tolerance table (the packaged one, or ``path``); checked for shape and justifications."""
    text = Path(path).read_text() if path else resources.files(__package__).joinpath("data/tolerances.json").read_text()
    table = json.loads(text)
    for precision in table.get("precisions", {}):
        Precision.parse(precision)
    for n, override in enumerate(table.get("overrides", [])):
        if not str(override.get("why", "")).strip():
            raise UsageError(f"tolerance override #{n} has no 'why'",
                             hint="every loosened tolerance must say why it is justified")
        unknown = set(override) - set(SELECTORS) - set(NUMBERS) - {"why"}
        if unknown:
            raise UsageError(f"tolerance override #{n} has unknown keys {sorted(unknown)}",
                             hint=f"selectors: {SELECTORS}; numbers: {NUMBERS}")
    return table


def _matches(override: dict[str, Any], wanted: dict[str, str | None]) -> bool:
    return all(override[key] == wanted[key] for key in SELECTORS if key in override and key != "cpu_without")


def _cpu_lacks(feature: str) -> bool:
    from portarun.plugin import cpu_features

    return not getattr(cpu_features(), feature)


def tolerance_for(precision: Precision | str, *, backend: str | None = None, case: str | None = None,
                  op: str | None = None, table: dict[str, Any] | None = None) -> Tolerance:
    """The tolerance for ``precision`` on this CPU, with matching overrides applied (most specific last)."""
    return explain_tolerance(precision, backend=backend, case=case, op=op, table=table)[0]


def explain_tolerance(precision: Precision | str, *, backend: str | None = None, case: str | None = None,
                      op: str | None = None, table: dict[str, Any] | None = None) -> tuple[Tolerance, list[str]]:
    """(tolerance, the 'why' of every override applied) for reports."""
    precision = Precision.parse(precision)
    table = table or load_table()
    if precision.value not in table["precisions"]:
        raise UsageError(f"no tolerance for precision {precision} in the tolerance table")
    values = dict(table["precisions"][precision.value])
    wanted = {"precision": precision.value, "backend": backend, "case": case, "op": op}
    matching = [(sum(key in o for key in SELECTORS), n, o) for n, o in enumerate(table.get("overrides", []))
                if _matches(o, wanted) and ("cpu_without" not in o or _cpu_lacks(o["cpu_without"]))]
    reasons = []
    for _, _, override in sorted(matching, key=lambda item: (item[0], item[1])):
        values.update({k: v for k, v in override.items() if k in NUMBERS})
        reasons.append(override["why"])
    return Tolerance(**values), reasons
