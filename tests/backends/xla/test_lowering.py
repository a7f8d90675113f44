"""Shape folding, control flow and quantized weights on the XLA backend, against the reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest

import portarun

from . import _models

pytest.importorskip("jax")


def _check(model, feeds, precision="fp32", rtol=1e-5, atol=1e-5, **options):
    want = portarun.compile(model, "reference:cpu", precision).run(feeds)
    exe = portarun.compile(model, "xla:cpu", precision, **options)
    got = exe.run(feeds)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=atol)
    return exe


@pytest.mark.parametrize("batch,seq", [(1, 3), (2, 5), (4, 16)])
def test_shape_chain_folds_for_each_dynamic_shape(batch, seq):
    model = _models.reshape_chain()
    x = np.random.default_rng(batch).standard_normal((batch, seq, 8)).astype(np.float32)
    exe = _check(model, {"x": x})
    details = exe.provenance.details
    # one static XLA program for the shape: no op-by-op fallback
    assert details["compile_count"] == 1 and "eager" not in details


def test_if_on_a_data_dependent_condition_is_one_program():
    model = _models.if_model()
    exe = portarun.compile(model, "xla:cpu")
    for x in ([1.0, 2.0, 3.0], [-1.0, -2.0, 0.5]):
        feeds = {"x": np.asarray(x, np.float32)}
        want = portarun.compile(model, "reference:cpu").run(feeds)
        np.testing.assert_allclose(exe.run(feeds)["y"], want["y"])
    assert exe.provenance.details["compile_count"] == 1  # lax.cond, not a retrace per branch
    assert "eager" not in exe.provenance.details


def test_loop_with_static_trip_count_is_compiled():
    model = _models.loop_model()
    exe = _check(model, {"x": np.asarray([1.0, -2.0], np.float32)})
    assert "eager" not in exe.provenance.details


def test_loop_with_data_dependent_trip_count_runs_op_by_op_and_says_so():
    model = _models.loop_model(trip_count_input=True)
    feeds = {"x": np.asarray([1.0, 3.0], np.float32), "n": np.asarray(7, np.int64)}
    exe = _check(model, feeds)
    assert exe.run(feeds)["history"].shape == (7, 2)
    assert exe.provenance.details["eager"]  # stacked outputs of data-dependent length


@pytest.mark.parametrize("seq", [1, 6])
def test_scan_running_sum(seq):
    model = _models.scan_model()
    rng = np.random.default_rng(seq)
    feeds = {"s0": rng.standard_normal(4).astype(np.float32),
             "xs": rng.standard_normal((seq, 4)).astype(np.float32)}
    _check(model, feeds)


def test_int8_per_channel_weights_stay_int8_and_match():
    model = _models.dequantize_matmul(block_size=0)
    x = np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32)
    exe = _check(model, {"x": x}, precision="int8-weight", rtol=1e-4, atol=1e-4)
    assert exe.provenance.details["rewrites"]["qmatmul"] == 1
    (stored,) = [w for name, w in exe.program.weights.items() if name.startswith("wq")]
    assert str(stored.dtype) == "int8" and stored.size >= 64 * 16  # int8 on the device (CPUs: split along N)


@pytest.mark.parametrize("zero_point", [True, False])
def test_blocked_int4_dequantize_matmul_is_fused_and_exact(zero_point):
    model = _models.dequantize_matmul(block_size=16, zero_point=zero_point)
    x = np.random.default_rng(3).standard_normal((2, 64)).astype(np.float32)
    exe = _check(model, {"x": x}, precision="int4-weight", rtol=1e-4, atol=1e-4)
    assert exe.provenance.details["rewrites"]["qmatmul"] == 1
    (stored,) = [w for name, w in exe.program.weights.items() if name.startswith("wq")]
    # 4 bits per weight on the device (two per byte on CPUs), dequantized in the program; the native CPU
    # kernel pads N to its 64-column tiles
    columns = 64 if exe.provenance.details["quantized_matmul"] == "native" else 16
    assert str(stored.dtype) == "int4" or (stored.dtype.itemsize == 1 and stored.size == 64 * columns // 2)


def test_eager_mode_matches_jit(builtin_models, builtin_feeds):
    feeds = builtin_feeds("cnn")
    jit = portarun.compile(builtin_models["cnn"], "xla:cpu").run(feeds)
    eager = portarun.compile(builtin_models["cnn"], "xla:cpu", jit=False).run(feeds)
    for key in jit:
        np.testing.assert_allclose(eager[key], jit[key], rtol=1e-5, atol=1e-5)
