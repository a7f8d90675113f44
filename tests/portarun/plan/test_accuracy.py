"""Accuracy against the reference and the labels (portarun.compare underneath)."""

from __future__ import annotations

import numpy as np

from portarun.plan.accuracy import accuracy_of, exact_match


def test_exact_match_compares_argmax_of_scores_or_token_ids():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], dtype=np.float32)
    assert exact_match(scores, np.array([1, 0, 0, 0])) == 0.75
    tokens = np.array([[5, 6, 7, 8], [1, 2, 3, 4]])
    assert exact_match(tokens, np.array([[5, 6, 0], [1, 2, 3]])) == 5 / 6  # the labels' length is compared


def test_accuracy_of_reads_cosine_top1_and_max_abs():
    reference = {"logits": np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], dtype=np.float32)}
    outputs = {"logits": np.array([[1.0, 2.0, 3.5], [2.0, 2.5, 1.0]], dtype=np.float32)}
    result = accuracy_of(outputs, reference, labels=np.array([2, 0]), samples=2)
    a, e = outputs["logits"].ravel().astype(np.float64), reference["logits"].ravel().astype(np.float64)
    assert np.isclose(result.cosine, a @ e / np.linalg.norm(a) / np.linalg.norm(e))
    assert result.top1 == 0.5 and result.max_abs == 1.0 and result.exact == 0.5 and result.samples == 2
