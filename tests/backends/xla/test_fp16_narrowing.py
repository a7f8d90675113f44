"""fp16/bf16 executables saturate float32 constants to the compute dtype's range, never to inf."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import portarun
from portarun import models

from . import _models

pytest.importorskip("jax")


def _masked_softmax(mask_value: float) -> portarun.Model:
    """Where(allowed, scores, mask_value) -> Softmax: the attention mask of exported decoders."""
    nodes = [helper.make_node("Where", ["allowed", "scores", "neg"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["probs"], axis=-1)]
    return _models.model(nodes, [_models.tensor("allowed", TensorProto.BOOL, [2, 4]),
                                 _models.tensor("scores", TensorProto.FLOAT, [2, 4])],
                         [_models.tensor("probs", TensorProto.FLOAT, [2, 4])],
                         [_models.init("neg", np.array(mask_value, np.float32))], name="masked_softmax")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("mask_value", [float(np.finfo(np.float32).min), -1e9])
def test_large_negative_mask_constant_stays_finite(precision, mask_value):
    feeds = {"allowed": np.array([[True, True, False, False], [False, False, False, False]]),  # row 2 fully masked
             "scores": np.array([[0.5, -0.25, 3.0, 1.0], [1.0, 2.0, 3.0, 4.0]], np.float32)}
    model = _masked_softmax(mask_value)
    expected = portarun.compile(model, "reference:cpu").run(feeds)["probs"]
    got = portarun.compile(model, "xla:cpu", precision).run(feeds)["probs"]
    assert np.isfinite(got).all(), got
    np.testing.assert_allclose(got, expected, atol=1e-2)  # the fully masked row is uniform, as in fp32


def test_true_infinities_are_kept():
    """Saturation is for overflowing finite values: a model's own -inf still means -inf."""
    model = _masked_softmax(-np.inf)
    feeds = {"allowed": np.array([[True, False, True, False]] * 2), "scores": np.ones((2, 4), np.float32)}
    got = portarun.compile(model, "xla:cpu", "fp16").run(feeds)["probs"]
    np.testing.assert_allclose(got, [[0.5, 0.0, 0.5, 0.0]] * 2)


def test_cast_to_float_in_fp16_saturates():
    nodes = [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)]
    model = _models.model(nodes, [_models.tensor("x", TensorProto.INT64, [3])],
                          [_models.tensor("y", TensorProto.FLOAT, [3])], name="cast")
    got = portarun.compile(model, "xla:cpu", "fp16").run({"x": np.array([1, -10 ** 9, 10 ** 6])})["y"]
    np.testing.assert_array_equal(got, [1.0, -65504.0, 65504.0])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_decoder_tiny_fp16_prefill_is_finite_and_close_to_fp32():
    model = models.build("decoder-tiny")
    seq, capacity = 6, 8
    feeds = {"input_ids": np.arange(3, 3 + seq, dtype=np.int64)[None],
             "position_ids": np.arange(seq, dtype=np.int64)[None],
             # a static cache: `capacity` empty slots (masked), then the prompt
             "attention_mask": np.concatenate([np.zeros((1, capacity), np.int64), np.ones((1, seq), np.int64)], 1)}
    for spec in model.inputs[3:]:
        feeds[spec.name] = np.zeros((1, spec.shape[1], capacity, spec.shape[3]), np.float32)
    fp32 = portarun.compile(model, "xla:cpu", "fp32").run(feeds)["logits"]
    fp16 = portarun.compile(model, "xla:cpu", "fp16").run(feeds)["logits"]
    assert np.isfinite(fp16).all()
    assert _cosine(fp16, fp32) > 0.999
    # a fully masked batch row (all padding) used to turn into NaN through -inf - -inf
    feeds["attention_mask"] = np.zeros_like(feeds["attention_mask"])
    assert np.isfinite(portarun.compile(model, "xla:cpu", "fp16").run(feeds)["logits"]).all()
