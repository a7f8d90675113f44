"""The search's one float session with fed weights computes what the built QDQ artifact computes."""

from __future__ import annotations

import numpy as np
import pytest

import portarun
from portarun.quantize.calibration import RandomCalibration
from portarun.quantize.evaluator import Evaluator
from portarun.quantize.rewrite import Options, build, find_targets, upgrade_opset
from portarun.quantize.swap import WeightSwapSession

DIMS = {"batch": 1, "seq": 6, "past_seq": 0, "total_seq": 6}


@pytest.fixture(scope="module")
def decoder():
    model = portarun.models.build("decoder-tiny")
    base = upgrade_opset(model.proto, 21)
    return model, base, find_targets(base)


def test_fed_weights_equal_the_built_artifact(decoder):
    model, base, targets = decoder
    samples = RandomCalibration(5, seed=3, dims=DIMS).samples(model)
    levels = {t.node: ("int4", "int8", "float")[i % 3] for i, t in enumerate(targets)}  # a mix, as the search makes
    runner, opts, outputs = Evaluator("auto"), Options(block_size=32), [o.name for o in model.outputs]
    session = WeightSwapSession(base, targets, runner, outputs, opts)
    try:
        fed = session.run(levels, samples)
        assert session.stack  # decoder samples stack along the batch axis (checked against one by one)
    finally:
        session.close()
    built = runner.run(build(base, targets, levels, opts), samples, outputs=outputs)
    for got, want in zip(fed, built):
        for name in outputs:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=2e-5)


def test_local_error_grows_as_precision_drops(decoder):
    model, base, targets = decoder
    samples = RandomCalibration(3, seed=1, dims=DIMS).samples(model)
    session = WeightSwapSession(base, targets, Evaluator("auto"), [o.name for o in model.outputs], Options())
    try:
        probed = [{**s, **r} for s, r in zip(samples, session.run({}, samples, probes=True))]
        for t in targets:
            int8, int4 = session.local_error(t, "int8", probed), session.local_error(t, "int4", probed)
            assert int8 is not None and 0 < int8 < int4 < 1, t.node
            assert session.local_error(t, "float", probed) == 0
    finally:
        session.close()


def test_local_error_is_the_layers_relative_output_error(decoder):
    model, base, targets = decoder
    samples = RandomCalibration(2, seed=4, dims=DIMS).samples(model)
    session = WeightSwapSession(base, targets, Evaluator("auto"), [o.name for o in model.outputs], Options())
    try:
        probed = [{**s, **r} for s, r in zip(samples, session.run({}, samples, probes=True))]
        for t in [t for t in targets if t.op == "MatMul"]:
            assert t.output in probed[0]  # the float output is probed: its energy is read, not recomputed
            x = np.concatenate([p[t.activation].reshape(-1, p[t.activation].shape[-1]) for p in probed]).astype(np.float64)
            w, wq = session.floats[t.weight].astype(np.float64), session.weight(t, "int4").astype(np.float64)
            want = np.sum((x @ (wq - w)) ** 2) / np.sum((x @ w) ** 2)
            assert session.local_error(t, "int4", probed) == pytest.approx(want, rel=1e-3), t.node
    finally:
        session.close()
