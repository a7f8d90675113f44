"""XLA backend: parity with the reference, compile cache, bucketing, bad input, provenance, artifacts."""

from __future__ import annotations

import numpy as np
import pytest

import portarun
from portarun import CompileError, InputError, Model, models

from . import _models

pytest.importorskip("jax")


@pytest.mark.parametrize("name", models.names(kind="model"))
def test_builtin_matches_reference_fp32(name, builtin_models, builtin_feeds):
    model = builtin_models[name]
    feeds = builtin_feeds(name)
    expected = portarun.compile(model, "reference:cpu").run(feeds)
    with portarun.compile(model, "xla:cpu") as exe:
        got = exe.run(feeds)
    for key, ref in expected.items():
        np.testing.assert_allclose(got[key], ref, rtol=1e-4, atol=1e-5)
        assert got[key].dtype == ref.dtype


def test_bf16_runs_in_bf16_and_stays_close(builtin_models, builtin_feeds):
    feeds = builtin_feeds("mlp")
    expected = portarun.compile(builtin_models["mlp"], "reference:cpu").run(feeds)
    exe = portarun.compile(builtin_models["mlp"], "xla:cpu", "bf16")
    got = exe.run(feeds)
    assert exe.provenance.precision == "bf16"
    (key,) = expected
    assert got[key].dtype == np.float32  # outputs keep the model's declared dtype
    assert not np.array_equal(got[key], expected[key])  # it really computed in bf16
    np.testing.assert_allclose(got[key], expected[key], rtol=0.1, atol=0.1)


def test_compile_cache_per_shape_signature(builtin_models):
    exe = portarun.compile(builtin_models["mlp"], "xla:cpu")
    rng = np.random.default_rng(0)
    for batch in (1, 2, 1, 2, 5):
        exe.run({"x": rng.standard_normal((batch, 64)).astype(np.float32)})
    details = exe.provenance.details
    assert details["compile_count"] == 3
    assert len(details["signatures"]) == 3
    assert details["compile_seconds_total"] > 0


def test_bucketing_pads_batch_to_power_of_two_and_slices(builtin_models):
    model = builtin_models["mlp"]
    plain = portarun.compile(model, "xla:cpu")
    bucketed = portarun.compile(model, "xla:cpu", bucket={"batch": "pow2"})
    rng = np.random.default_rng(1)
    for batch in (3, 4, 2, 5, 7):
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        got = bucketed.run({"x": x})
        want = plain.run({"x": x})
        (key,) = want
        assert got[key].shape == want[key].shape
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
    # 3 and 4 share bucket 4, 2 has its own, 5 and 7 share bucket 8
    assert bucketed.provenance.details["compile_count"] == 3


def test_bucketing_unknown_dim_is_refused(builtin_models):
    with pytest.raises(InputError, match="seq"):
        portarun.compile(builtin_models["mlp"], "xla:cpu", bucket={"seq": "pow2"})


def test_unsupported_ops_are_all_listed_before_tracing():
    model = Model.from_proto(_models.unknown_ops(), check=False)
    backend = portarun.get_backend("xla")
    support = backend.supports(model, "xla:cpu")
    assert not support
    assert set(support.missing_ops) == {"example.custom::FancyOp", "example.custom::OtherOp"}
    with pytest.raises(CompileError) as info:
        portarun.compile(model, "xla:cpu")
    assert "FancyOp" in str(info.value) and "OtherOp" in str(info.value)


def test_wrong_feed_shape_and_dtype(builtin_models):
    exe = portarun.compile(builtin_models["mlp"], "xla:cpu")
    with pytest.raises(InputError, match="dim 1 must be 64"):
        exe.run({"x": np.zeros((1, 63), np.float32)})
    with pytest.raises(InputError, match="dtype"):
        exe.run({"x": np.zeros((1, 64), np.float64)})
    with pytest.raises(InputError, match="missing"):
        exe.run({})


def test_provenance_names_jax_device_and_layout(builtin_models, builtin_feeds):
    exe = portarun.compile(builtin_models["transformer"], "xla:cpu")
    exe.run(builtin_feeds("transformer"))
    details = exe.provenance.details
    assert details["jax"] and details["jaxlib"] and details["platform"] == "cpu"
    assert details["device_kind"]
    assert details["weight_layout"] == "nk"
    assert details["rewrites"].get("transposed", 0) > 0
    assert exe.provenance.target == "xla:cpu"


def test_weight_layout_kn_gives_the_same_numbers(builtin_models, builtin_feeds):
    feeds = builtin_feeds("transformer")
    nk = portarun.compile(builtin_models["transformer"], "xla:cpu").run(feeds)
    kn = portarun.compile(builtin_models["transformer"], "xla:cpu", weight_layout="kn").run(feeds)
    for key in nk:
        np.testing.assert_allclose(nk[key], kn[key], rtol=1e-5, atol=1e-5)


def test_artifact_round_trip(tmp_path, builtin_models, builtin_feeds):
    feeds = builtin_feeds("cnn")
    exe = portarun.compile(builtin_models["cnn"], "xla:cpu")
    want = exe.run(feeds)
    path = exe.save(tmp_path / "cnn.xla")
    assert (path / "payload" / "signatures.json").is_file()
    loaded = portarun.load_compiled(path)
    assert loaded.provenance.details["loaded_signatures"] >= 1
    got = loaded.run(feeds)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6)


def test_gpu_target_is_unavailable_without_a_gpu():
    import jax

    try:
        has_gpu = bool(jax.devices("gpu"))
    except RuntimeError:
        has_gpu = False
    if has_gpu:
        pytest.skip("a GPU is present; the GPU parity run lives in tools/bench_xla.py --gpu")
    with pytest.raises(portarun.BackendUnavailableError, match="xla:gpu"):
        portarun.compile("builtin:mlp", "xla:gpu")


def test_fp16_transformer_close_to_fp32(builtin_models, builtin_feeds):
    feeds = builtin_feeds("transformer", seq=16)
    want = portarun.compile(builtin_models["transformer"], "xla:cpu").run(feeds)
    got = portarun.compile(builtin_models["transformer"], "xla:cpu", "fp16").run(feeds)
    for key in want:
        assert got[key].dtype == np.float32
        np.testing.assert_allclose(got[key], want[key], rtol=0.05, atol=0.05)


def test_quantized_precision_needs_a_quantized_model(builtin_models):
    support = portarun.get_backend("xla").supports(builtin_models["mlp"], "xla:cpu", "int4-weight")
    assert not support and "quantize it" in support.reason
