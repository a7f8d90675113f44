"""Tolerances per precision, with per-backend/per-case overrides, from one data file."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from portarun import Precision, Tolerance


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("data/tolerances.json").read_text())


def tolerance_for(precision: Precision | str, *, backend: str | None = None, case: str | None = None) -> Tolerance:
    """The tolerance for ``precision``; an override matching backend and/or case wins.

    Overrides are entries ``{"backend": ..., "case": ..., "precision": ..., "rtol": ..., "why": ...}``;
    every key but the numbers is optional and must match when present.
    """
    precision = Precision.parse(precision)
    base = dict(_table()["precisions"][precision.value])
    for override in _table().get("overrides", []):
        if override.get("precision", precision.value) != precision.value:
            continue
        if "backend" in override and override["backend"] != backend:
            continue
        if "case" in override and override["case"] != case:
            continue
        base.update({k: v for k, v in override.items() if k in ("rtol", "atol", "min_cosine", "min_within")})
    return Tolerance(**base)
