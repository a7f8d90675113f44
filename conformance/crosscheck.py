"""Run one model on two targets with the same feeds and compare the outputs (``portarun compare``):
the expected side runs the model as written, the checked side at the requested precision; with
``localize``, bisect to the first node whose output leaves tolerance."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

import portarun
from portarun import Comparison, Precision, Tolerance
from portarun.model import quantization_of
from portarun.registry import resolve_target

from .cases import case_for
from .localize import Localization, localize as localize_divergence
from .tolerances import tolerance_for

DEFAULT_EXPECTED = "reference:cpu"


@dataclass
class CrossCheck:
    """The comparison (truthy when it passes), both sides' provenance, the tolerance, the localization."""

    case: str
    expected: dict[str, Any]  # provenance of the expected side
    actual: dict[str, Any]  # provenance of the checked side
    tolerance: Tolerance
    comparison: Comparison  # of the worst sample
    localization: Localization | None = None
    samples: int = 1  # how many samples were compared
    worst_sample: int = 0

    def __bool__(self) -> bool:
        return bool(self.comparison)

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "expected": self.expected, "actual": self.actual,
                "comparison": self.comparison.to_dict(), "samples": self.samples, "worst_sample": self.worst_sample,
                "localization": self.localization.to_dict() if self.localization else None}


def compare_targets(model: str, actual_target: str, precision: Precision | str | None = None, *,
                    expected_target: str = DEFAULT_EXPECTED, dims: Mapping[str, int] | None = None, seed: int = 0,
                    rtol: float | None = None, atol: float | None = None, localize: bool = False,
                    feeds: Any = None, isolate: bool = False, timeout: float | None = None) -> CrossCheck:
    """Compare ``model`` on ``actual_target`` at ``precision`` (None: as the model is written) with
    ``expected_target``, within the precision's tolerance (``rtol``/``atol`` override it).

    ``feeds``: the user's data (a FeedSet, a list of feed dicts, an .npz path or a folder); every
    sample is compared and the worst one reported. None: seeded random feeds that respect the graph.
    Feeds on which the result is undefined (``portarun.undefined_behaviour``) make it a divergence.
    ``isolate`` / ``timeout`` run both sides in worker processes (``portarun.compile``)."""
    actual_target = str(resolve_target(actual_target))
    case = case_for(model, dict(dims or {}))
    loaded = case.load()
    samples = _samples(loaded, feeds, seed, case.dims)
    isolation = {"isolate": isolate, "timeout": timeout}
    wanted = Precision.parse(precision) if precision is not None else portarun.api.default_precision(loaded)
    tolerance = tolerance_for(wanted, backend=resolve_target(actual_target).backend, case=case.name)
    if rtol is not None or atol is not None:
        tolerance = replace(tolerance, rtol=tolerance.rtol if rtol is None else rtol,
                            atol=tolerance.atol if atol is None else atol)
    undefined = [portarun.undefined_behaviour(loaded, f) for f in samples]
    with portarun.compile(loaded, expected_target, quantization_of(loaded) or "fp32", **isolation) as exe:
        expected = [_run_side(exe, f, u) for f, u in zip(samples, undefined)]
        expected_provenance = exe.provenance.to_dict()
    with portarun.compile(loaded, actual_target, wanted, **isolation) as exe:
        actual = [_run_side(exe, f, u) for f, u in zip(samples, undefined)]
        actual_provenance = exe.provenance.to_dict()
    comparisons = [portarun.compare(a, e, tolerance, undefined=u) for a, e, u in zip(actual, expected, undefined)]
    worst = min(range(len(samples)), key=lambda i: (bool(comparisons[i]), -max(
        (o.max_abs for o in comparisons[i].outputs), default=0.0)))
    result = CrossCheck(case.name, expected_provenance, actual_provenance, tolerance, comparisons[worst],
                        samples=len(samples), worst_sample=worst)
    feeds = samples[worst]
    if localize:
        result.localization = localize_divergence(loaded, actual_target, wanted, feeds, reference=expected_target,
                                                  tolerance=tolerance)
    return result


def _run_side(exe: Any, feeds: dict[str, Any], undefined: list[str]) -> dict[str, Any]:
    """One side's outputs; on undefined feeds a side that refuses to run (onnxruntime raises on an
    out-of-range Gather) is part of the divergence, not the end of the comparison."""
    try:
        return exe.run(feeds)
    except portarun.RunError as exc:
        if not undefined:
            raise
        undefined.append(f"{exe.target} refused to run: {exc.message}")
        return {}


def _samples(model, feeds: Any, seed: int, dims: Mapping[str, int]) -> list[dict]:
    if feeds is None:
        return [portarun.random_feeds(model, seed=seed, dims=dims)]
    from portarun.samples import FeedSet, load_samples

    if isinstance(feeds, FeedSet):
        return load_samples(model, feeds.samples).samples
    return load_samples(model, feeds).samples


__all__ = ["CrossCheck", "DEFAULT_EXPECTED", "compare_targets"]
