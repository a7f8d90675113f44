"""Judging candidate plans on the validation samples, cheaply: failing ones stop at their worst samples.

A floor on worst-sample bounds (cosine, top-1, max abs) fails as soon as one sample fails it, whatever
the others give. Most candidates the search tries fail (each greedy move but the last, most undo
trials), so a candidate runs the samples that came out worst so far first, in stages (``STAGES``: the
2 worst, then up to 8), and stops as soon as a stage fails; a passing candidate runs the rest and is
measured on all samples in their given order, exactly as before. Decisions are the same; a failed step's accuracy reads as what
was measured ("... (8 samples)"). Floors on averages (mean abs, next-token agreement, exact match
against labels) always run every sample.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .accuracy import Accuracy, AccuracyFloor, Reference, measure

Feeds = dict[str, np.ndarray]
STAGES = (2, 8)  # samples run (worst first) before a candidate may stop: 2, then 8, then all
EARLY_SAMPLES = STAGES[0]


def stops_early(floor: AccuracyFloor, labels: Any) -> bool:
    """Whether one failing sample fails ``floor`` whatever the other samples give."""
    return labels is None and floor.mean_abs is None and floor.next_token is None and floor.exact_match is None


class Judge:
    """``judge(plan)``: the accuracy of ``plan`` against the float ``reference`` outputs.

    ``run(plan, samples)`` computes a plan's outputs for some validation samples (the search's one
    session, or a built artifact); ``measure_kwargs`` go to ``accuracy.measure`` (labels and such)."""

    def __init__(self, run: Callable[[dict[str, str], list[Feeds]], list[Feeds]], samples: list[Feeds],
                 reference: list[Feeds], floor: AccuracyFloor, *, labels: list[Any] | None = None,
                 **measure_kwargs: Any):
        self.run, self.samples, self.floor, self.labels = run, samples, floor, labels
        self.reference = Reference(reference)
        self.measure_kwargs = measure_kwargs
        self.early = stops_early(floor, labels) and len(samples) > EARLY_SAMPLES
        self.worst = [1.0] * len(samples)  # each sample's lowest cosine when last measured: worst go first

    def measure(self, outputs: list[Feeds], indices: list[int] | None = None,
                cosines: list[float] | None = None) -> Accuracy:
        reference = self.reference if indices is None else self.reference.subset(indices)
        labels = self.labels if self.labels is None or indices is None else [self.labels[i] for i in indices]
        return measure(outputs, reference, self.floor, labels=labels, sample_cosines=cosines, **self.measure_kwargs)

    def __call__(self, plan: dict[str, str], limit: int | None = None) -> Accuracy:
        """Accuracy of ``plan`` on the validation samples (the first ``limit`` of them, every one run)."""
        if limit is not None or not self.early:
            count = len(self.samples) if limit is None else min(limit, len(self.samples))
            return self.measure(self.run(plan, self.samples[:count]), list(range(count)) if limit else None)
        order = sorted(range(len(self.samples)), key=lambda i: self.worst[i])  # stable: ties keep their order
        got: dict[int, Feeds] = {}
        for stage in STAGES:
            if stage >= len(order):
                break
            chosen = order[len(got):stage]
            got.update(zip(chosen, self.run(plan, [self.samples[i] for i in chosen])))
            cosines: list[float] = []
            early = self.measure([got[i] for i in order[:stage]], order[:stage], cosines)
            self._remember(order[:stage], cosines)
            if not early.passed:
                return early
        rest = [i for i in order if i not in got]
        got.update(zip(rest, self.run(plan, [self.samples[i] for i in rest])))
        cosines = []
        accuracy = self.measure([got[i] for i in range(len(self.samples))], None, cosines)
        self._remember(list(range(len(self.samples))), cosines)
        return accuracy

    def _remember(self, indices: list[int], cosines: list[float]) -> None:
        for index, cosine in zip(indices, cosines):
            self.worst[index] = cosine
