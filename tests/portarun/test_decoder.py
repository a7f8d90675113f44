"""The built-in Llama-style decoder: deterministic bytes, standard ops, and a KV cache that is exact."""

import numpy as np
import pytest

import portarun
from portarun import models
from portarun.models import decoder

LAYERS, KV_HEADS, HEAD_DIM, VOCAB = 2, 2, 16, 256  # decoder-tiny


@pytest.fixture(scope="module")
def tiny():
    return models.build("decoder-tiny")


@pytest.fixture(scope="module", params=["onnxruntime:cpu", "reference"])
def exe(request, tiny):
    with portarun.compile(tiny, request.param) as executable:
        yield executable


def empty_cache(batch=1, length=0):
    return {f"past_key_values.{i}.{kind}": np.zeros((batch, KV_HEADS, length, HEAD_DIM), np.float32)
            for i in range(LAYERS) for kind in ("key", "value")}


def step(exe, ids, positions, cache, mask=None):
    ids = np.asarray(ids, dtype=np.int64)
    total = next(iter(cache.values())).shape[2] + ids.shape[1]
    mask = np.ones((ids.shape[0], total), np.int64) if mask is None else mask
    out = exe.run({"input_ids": ids, "position_ids": np.asarray(positions, dtype=np.int64),
                   "attention_mask": mask, **cache})
    present = {f"past_key_values.{i}.{kind}": out[f"present.{i}.{kind}"] for i in range(LAYERS)
               for kind in ("key", "value")}
    return out["logits"], present


def test_same_seed_same_bytes_other_seed_other_weights(tiny):
    again = models.build("decoder-tiny")
    assert again.proto.SerializeToString() == tiny.proto.SerializeToString()
    other = models.build("decoder-tiny", seed=1)
    assert other.proto.graph.node == tiny.proto.graph.node
    assert other.sha256 != tiny.sha256


def test_signature_standard_ops_and_config(tiny):
    names = [s.name for s in tiny.inputs]
    assert names[:3] == ["input_ids", "position_ids", "attention_mask"]
    assert names[3:] == [f"past_key_values.{i}.{k}" for i in range(LAYERS) for k in ("key", "value")]
    assert [s.name for s in tiny.outputs][0] == "logits"
    assert tiny.opset == 18 and set(tiny.opsets) == {"ai.onnx"}  # no contrib ops
    ops = set(tiny.stats().op_histogram)
    assert {"Softmax", "Sigmoid", "Cos", "Sin", "Where", "MatMul", "Gather"} <= ops
    config = decoder.config_of(tiny)
    assert config["kv_heads"] == KV_HEADS and config["head_dim"] == HEAD_DIM and config["vocab"] == VOCAB
    assert tiny.stats().parameters >= decoder.parameter_count(**{k: config[k] for k in (
        "hidden", "layers", "heads", "kv_heads", "intermediate", "vocab")})


def test_registered_sizes_match_the_issue():
    assert set(models.names(kind="decoder")) == {"decoder-tiny", "decoder-small", "decoder-1b"}
    assert "decoder-tiny" not in models.names(kind="model")  # conformance model cases stay as they were
    small = models.get("decoder-small").kwargs
    big = models.get("decoder-1b").kwargs
    dims = lambda kw: {k: kw[k] for k in ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab")}  # noqa
    assert 90e6 <= decoder.parameter_count(**dims(small)) <= 110e6
    assert dims(big) == dict(hidden=2048, layers=22, heads=32, kv_heads=4, intermediate=5632, vocab=32000)
    assert 1.0e9 <= decoder.parameter_count(**dims(big)) <= 1.2e9


def test_prefill_then_decode_equals_full_sequence_without_cache(exe):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(2, 12))
    positions = np.broadcast_to(np.arange(12), (2, 12))
    full, _ = step(exe, ids, positions, empty_cache(2))
    logits, cache = step(exe, ids[:, :8], positions[:, :8], empty_cache(2))
    np.testing.assert_allclose(logits, full[:, :8], rtol=1e-4, atol=1e-4)
    for t in range(8, 12):
        logits, cache = step(exe, ids[:, t:t + 1], positions[:, t:t + 1], cache)
        np.testing.assert_allclose(logits[:, 0], full[:, t], rtol=1e-4, atol=1e-4)
    assert cache["past_key_values.0.key"].shape == (2, KV_HEADS, 12, HEAD_DIM)


def test_masked_empty_slots_of_a_fixed_size_cache_change_nothing(exe):
    ids = np.array([[5, 17, 42, 99, 3]])
    positions = np.arange(5)[None]
    reference, present = step(exe, ids, positions, empty_cache())
    capacity = 8
    # garbage in the empty slots must be ignored because the mask hides it
    garbage = {k: np.full((1, KV_HEADS, capacity, HEAD_DIM), 7.0, np.float32) for k in empty_cache()}
    mask = np.concatenate([np.zeros((1, capacity), np.int64), np.ones((1, 5), np.int64)], axis=1)
    logits, _ = step(exe, ids, positions, garbage, mask)
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
    # and a decode step reading 5 filled slots of 8 equals the dynamic-cache step
    filled = {k: np.concatenate([v, np.full((1, KV_HEADS, capacity - 5, HEAD_DIM), -3.0, np.float32)], axis=2)
              for k, v in present.items()}
    mask = np.array([[1] * 5 + [0] * (capacity - 5) + [1]])
    fixed, _ = step(exe, [[11]], [[5]], filled, mask)
    dynamic, _ = step(exe, [[11]], [[5]], present)
    np.testing.assert_allclose(fixed, dynamic, rtol=1e-4, atol=1e-4)


def test_large_decoders_stream_to_external_data_and_reuse_the_cache(tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(decoder, "STREAM_BYTES", 0)  # treat the tiny one as large
    kwargs = dict(models.get("decoder-tiny").kwargs)
    streamed = decoder.build(cache=tmp_path, **kwargs)
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["decoder-tiny.onnx", "decoder-tiny.onnx.data"]
    assert streamed.path is not None and streamed.path.parent.parent == tmp_path
    data = next(tmp_path.rglob("*.data"))
    stamp = data.stat().st_mtime_ns
    again = decoder.build(cache=tmp_path, **kwargs)
    assert data.stat().st_mtime_ns == stamp and again.sha256 == streamed.sha256
    assert streamed.sha256 == tiny.sha256  # same weights and graph as the in-memory build
