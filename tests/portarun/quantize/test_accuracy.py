import numpy as np
import pytest

from portarun.errors import UsageError
from portarun.quantize import AccuracyFloor
from portarun.quantize.accuracy import measure
from portarun.types import Precision


def test_floor_parsing_and_defaults():
    assert AccuracyFloor.parse(None, Precision.INT8_WEIGHT).cosine == 0.999
    assert AccuracyFloor.parse(None, Precision.INT4_WEIGHT).cosine == 0.98
    floor = AccuracyFloor.parse("cosine=0.99, top1=0.9;max_abs=0.5", Precision.INT8)
    assert floor == AccuracyFloor(cosine=0.99, top1=0.9, max_abs=0.5)
    assert "cosine>=0.99" in floor.text() and "max_abs<=0.5" in floor.text()
    assert AccuracyFloor.parse({"mean-abs": 0.1}, Precision.INT8).mean_abs == 0.1


@pytest.mark.parametrize("text, message", [("cosine", "NAME=VALUE"), ("psnr=30", "unknown accuracy floor"),
                                           ("cosine=high", "numbers"), ("cosine=1.5", r"\[0, 1\]")])
def test_bad_floor_is_a_usage_error(text, message):
    with pytest.raises(UsageError, match=message):
        AccuracyFloor.parse(text, Precision.INT8)


def test_measure_per_sample_worst_case():
    rng = np.random.default_rng(0)
    ref = [{"logits": rng.standard_normal((4, 10)).astype(np.float32)} for _ in range(3)]
    same = [{"logits": r["logits"].copy()} for r in ref]
    acc = measure(same, ref, AccuracyFloor(cosine=0.999, top1=1.0, max_abs=0.0))
    assert acc.passed and acc.cosine_min == pytest.approx(1.0) and acc.top1 == 1.0 and acc.samples == 3
    noisy = [{"logits": r["logits"].copy()} for r in ref]
    noisy[2]["logits"] = -noisy[2]["logits"]  # one sample entirely wrong
    acc = measure(noisy, ref, AccuracyFloor(cosine=0.9, top1=0.9))
    assert not acc.passed and acc.cosine_min == pytest.approx(-1.0) and acc.cosine_mean == pytest.approx(1 / 3)
    assert any("cosine" in f for f in acc.failures) and any("top-1" in f for f in acc.failures)


def test_top1_floor_needs_class_scores():
    ref = [{"y": np.ones((1, 16, 8), np.float32)}]
    with pytest.raises(UsageError, match="class scores"):
        measure(ref, ref, AccuracyFloor(top1=0.9))


def test_zipmap_and_label_outputs_are_skipped_not_a_crash():
    # skl2onnx classifiers return labels and ZipMap's list of {class: probability} dicts
    sample = {"label": np.array([1]), "probabilities": [{0: 0.2, 1: 0.8}], "scores": np.array([[0.2, 0.8]], np.float32)}
    other = {**sample, "scores": np.array([[0.8, 0.2]], np.float32)}
    accuracy = measure([other], [sample], AccuracyFloor.parse("cosine=0.99", "int8"))
    assert accuracy.samples == 1 and accuracy.cosine_min < 0.99 and not accuracy.passed


def test_a_floor_of_cosine_1_holds_for_identical_outputs_and_shows_the_gap_otherwise():
    from portarun.quantize.accuracy import AccuracyFloor, measure

    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    same = measure([{"y": x.copy()}], [{"y": x}], AccuracyFloor(cosine=1.0))
    assert same.passed and same.failures == []
    close = x.copy()
    close[0] += 1e-3  # cosine 1 - O(1e-10): printed to six places it reads 1.000000
    near = measure([{"y": close}], [{"y": x}], AccuracyFloor(cosine=1.0))
    assert not near.passed and "1.000000" not in near.failures[0] and "0.99999" in near.failures[0]
    assert "1.000000" not in near.text()
