import numpy as np
import pytest

import portarun
from portarun import models

NAMES = models.names(kind="model")


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_bytes(name):
    assert models.build(name).proto.SerializeToString() == models.build(name).proto.SerializeToString()
    assert models.build(name, seed=1).sha256 != models.build(name).sha256


@pytest.mark.parametrize("name", NAMES)
def test_onnxruntime_matches_reference(name, builtin_models, builtin_feeds):
    model = builtin_models[name]
    for seed, batch in [(0, 1), (1, 3)]:
        feeds = builtin_feeds(name, seed=seed, batch=batch)
        expected = portarun.compile(model, "reference").run(feeds)
        actual = portarun.compile(model, "onnxruntime:cpu").run(feeds)
        result = portarun.compare(actual, expected, portarun.Tolerance(rtol=1e-4, atol=1e-5))
        assert result, result.summary()
        assert all(np.isfinite(v).all() and np.std(v) > 0.1 for v in actual.values())  # not degenerate


def test_transformer_is_dynamic_and_uses_a_shape_chain(builtin_models):
    model = builtin_models["transformer"]
    assert model.inputs[0].shape == ("batch", "seq", 256)
    ops = model.stats().op_histogram
    for op in ("Shape", "Gather", "Concat", "Reshape", "Softmax", "LayerNormalization", "Erf", "MatMul"):
        assert op in ops
    exe = portarun.compile(model, "onnxruntime:cpu")
    for batch, seq in [(1, 1), (2, 33)]:
        x = np.random.default_rng(0).standard_normal((batch, seq, 256)).astype(np.float32)
        assert exe.run({"x": x})["y"].shape == (batch, seq, 256)


def test_cnn_ops_and_unknown_builtin():
    ops = models.build("cnn").stats().op_histogram
    for op in ("Conv", "BatchNormalization", "Relu", "MaxPool", "GlobalAveragePool"):
        assert op in ops
    with pytest.raises(portarun.ModelNotFoundError, match="did you mean 'mlp'"):
        portarun.load("builtin:mpl")


def test_resolve_builtin_is_the_one_name_rule(tmp_path, monkeypatch):
    from portarun.models import builtin_default_dims, resolve_builtin

    assert resolve_builtin("builtin:mlp") == "mlp" and resolve_builtin("mlp") == "mlp"
    assert resolve_builtin("builtin:nosuch") == "nosuch"  # so get()/build() answer with a did-you-mean
    assert resolve_builtin("nosuch") is None and resolve_builtin(str(tmp_path / "m.onnx")) is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlp").write_text("a file named like a built-in")
    assert resolve_builtin("mlp") is None  # a file of that name wins over the bare name
    assert resolve_builtin("builtin:mlp") == "mlp"  # the prefix always means the built-in
    assert builtin_default_dims("builtin:transformer") == {"batch": 1, "seq": 128}
    assert builtin_default_dims("mlp") == {} and builtin_default_dims("builtin:nosuch") == {}
