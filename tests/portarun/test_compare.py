import numpy as np

from portarun import Tolerance, compare


def test_identical_outputs_pass_with_perfect_metrics():
    x = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    result = compare({"y": x}, {"y": x.copy()})
    assert result and result.max_abs == 0 and result.min_cosine == 1.0
    assert result.outputs[0].top1 == 1.0


def test_tolerance_boundary_and_metrics():
    expected = np.ones(1000, np.float32)
    actual = expected.copy()
    actual[0] += 2e-4  # outside rtol 1e-4 + atol 1e-5 of 1.0
    result = compare({"y": actual}, {"y": expected}, Tolerance(rtol=1e-4, atol=1e-5))
    assert not result
    out = result.outputs[0]
    assert abs(out.within - 0.999) < 1e-12
    assert abs(out.max_abs - 2e-4) < 1e-6
    assert "0.1% of elements outside" in out.reason
    assert compare({"y": actual}, {"y": expected}, Tolerance(rtol=1e-3))


def test_nmse_and_cosine_values():
    expected = np.array([1.0, 0.0, 0.0])
    actual = np.array([0.0, 1.0, 0.0])
    out = compare({"y": actual}, {"y": expected}).outputs[0]
    assert out.cosine == 0.0 and out.nmse == 2.0


def test_shape_nan_missing_and_integer_outputs():
    assert not compare({"y": np.zeros(3)}, {"y": np.zeros(4)})
    assert "shape" in compare({"y": np.zeros(3)}, {"y": np.zeros(4)}).outputs[0].reason
    assert compare({"y": np.array([np.nan, 1.0])}, {"y": np.array([np.nan, 1.0])})
    assert not compare({"y": np.array([np.nan, 1.0])}, {"y": np.array([0.0, 1.0])})
    assert not compare({}, {"y": np.zeros(1)})
    assert not compare({"i": np.array([1, 2])}, {"i": np.array([1, 3])}, Tolerance(rtol=1.0, atol=1.0))


def test_min_cosine_floor():
    expected = np.linspace(-1, 1, 100)
    actual = expected + 0.3 * np.sin(np.arange(100))
    loose = Tolerance(rtol=10, atol=10)
    assert compare({"y": actual}, {"y": expected}, loose)
    assert not compare({"y": actual}, {"y": expected}, Tolerance(rtol=10, atol=10, min_cosine=0.999))
