"""The search builds one session for every candidate plan, static int8 included: activation QDQ pairs are
switched by fed flags, and what the session computes is what the built artifact computes."""

from __future__ import annotations

import numpy as np
import pytest

import portarun
from portarun.quantize import quantizer as quantizer_module
from portarun.quantize.calibration import RandomCalibration
from portarun.quantize.evaluator import Evaluator
from portarun.quantize.quantizer import _calibrate
from portarun.quantize.rewrite import Options, build, find_targets, upgrade_opset
from portarun.quantize.swap import WeightSwapSession, run_samples

DIMS = {"seq": 8}


@pytest.fixture(scope="module")
def transformer():
    model = portarun.models.build("transformer")
    base = upgrade_opset(model.proto, 19)
    return model, base, find_targets(base)


def _static_options(model, base, targets, runner):
    calibration = RandomCalibration(4, seed=0, dims=DIMS).samples(model)
    opts = Options()
    opts.act_ranges = _calibrate(base, [t for t in targets if t.activation], calibration, runner, "minmax")
    return opts


@pytest.mark.parametrize("evaluator", ["reference", "auto"])
def test_fed_activation_flags_compute_what_the_static_int8_artifact_computes(transformer, evaluator):
    model, base, targets = transformer
    runner = Evaluator(evaluator)
    opts = _static_options(model, base, targets, runner)
    samples = RandomCalibration(3, seed=5, dims=DIMS).samples(model)
    # a mix the search makes: activation + weight, weight only, float
    levels = {t.node: ("int8+act", "int8", "float")[i % 3] for i, t in enumerate(targets)}
    outputs = [o.name for o in model.outputs]
    session = WeightSwapSession(base, targets, runner, outputs, opts)
    try:
        assert session.flagged  # the calibrated activations got their switchable QDQ pairs
        fed = session.run(levels, samples)
        float_fed = session.run({}, samples)
    finally:
        session.close()
    built = runner.run(build(base, targets, levels, opts), samples, outputs=outputs)
    plain = runner.run(base, samples, outputs=outputs)
    for got, want, got_float, want_float in zip(fed, built, float_fed, plain):
        for name in outputs:
            if evaluator == "reference":  # both compute QDQ op by op in float: the same numbers
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
            else:  # ORT fuses the artifact's QDQ into integer kernels: about one activation step apart
                a, b = got[name].ravel().astype(np.float64), want[name].ravel().astype(np.float64)
                assert np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) > 0.9999
            np.testing.assert_allclose(got_float[name], want_float[name], rtol=1e-5, atol=1e-5)
    assert not np.allclose(fed[0][outputs[0]], float_fed[0][outputs[0]])  # the flags did switch something


def test_static_int8_search_compiles_one_session_for_all_candidates(monkeypatch):
    """Counts compiles through the real Evaluator (a counting wrapper around the real compile)."""
    compiled = []
    real = quantizer_module.Evaluator.compile

    def counting(self, proto):
        compiled.append(proto.graph.name)
        return real(self, proto)

    monkeypatch.setattr(quantizer_module.Evaluator, "compile", counting)
    q = portarun.quantize("builtin:transformer", "int8", accuracy_floor="cosine=0.99995",
                          calibration=RandomCalibration(4, seed=0, dims=DIMS), dims=DIMS)
    steps = [s for s in q.report.fallback_steps if "searching on built artifacts" not in s]
    assert len(steps) >= 2, q.summary()  # a floor this high moves layers: many candidates were judged
    searched_on_artifacts = any("searching on built artifacts" in s for s in q.report.fallback_steps)
    # calibration run + the one search session + the artifact judged at the end
    assert searched_on_artifacts or len(compiled) == 3, compiled


def test_samples_of_different_shapes_stack_with_their_own_shape(transformer):
    model, base, targets = transformer
    runner = Evaluator("auto")
    short = RandomCalibration(3, seed=1, dims={"seq": 5}).samples(model)
    long = RandomCalibration(3, seed=9, dims={"seq": 9}).samples(model)
    mixed = [short[0], long[0], short[1], long[1], short[2], long[2]]
    outputs = [o.name for o in model.outputs]
    runs = []
    with runner.compile(base) as executable:
        real_run = executable.run

        def counted(feeds, **kwargs):
            runs.append(next(iter(feeds.values())).shape)
            return real_run(feeds, **kwargs)

        executable.run = counted
        stacked = run_samples(executable, mixed, outputs, stack=True)
        assert len(runs) == 2  # one run per shape, each with its three samples
        apart = run_samples(executable, mixed, outputs, stack=False)
    for a, b in zip(stacked, apart):  # each sample gets its own outputs back, in its place
        for name in outputs:
            assert a[name].shape == b[name].shape
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_when_the_artifact_disagrees_with_the_session_the_search_goes_on_on_built_artifacts(monkeypatch):
    """Plumbing fake: artifacts (protos with int4 DequantizeLinear nodes) compile to the real executable
    with noise added per int4 layer, as if the evaluator ran int4 less exactly than the float session
    computes it. The search must not report the session's pass: it goes on until the artifact passes."""
    real = quantizer_module.Evaluator.compile

    class Noisy:
        def __init__(self, executable, layers):
            self.executable, self.layers = executable, layers
            self.inputs = executable.inputs

        def run(self, feeds, **kwargs):
            out = self.executable.run(feeds, **kwargs)
            rng = np.random.default_rng(0)
            return {k: v + 0.2 * self.layers * np.abs(v).mean() * rng.standard_normal(v.shape).astype(v.dtype)
                    for k, v in out.items()}

        def close(self):
            self.executable.close()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    def compile(self, proto):
        layers = sum(node.op_type == "DequantizeLinear" and "_int4" in node.name for node in proto.graph.node)
        executable = real(self, proto)
        return Noisy(executable, layers) if layers else executable

    monkeypatch.setattr(quantizer_module.Evaluator, "compile", compile)
    q = portarun.quantize("builtin:mlp", "int4-weight", accuracy_floor="cosine=0.99")
    assert any("searching on built artifacts" in step for step in q.report.fallback_steps), q.summary()
    assert q.floor_met and q.report.accuracy.passed  # what the report claims, the artifact measured
    assert all(n.level != "int4" for n in q.report.nodes)  # every int4 layer made the artifact fail here
