"""The part of the real-model corpus (tools/real_models.py) that fits CI: classic ML from skl2onnx and
onnxmltools, and a transformers ViT exported by torch.onnx, each checked on every CPU backend
against a direct onnxruntime session. The rest (wheels' OCR/audio/detection files, decoders) is
the tool's full run, whose table is in the notes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "real_models.py"


@pytest.fixture(scope="module")
def corpus():
    spec = importlib.util.spec_from_file_location("real_models", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_models"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real-models")


def _entry(corpus, name):
    return next(e for e in corpus.ENTRIES if e.name == name)


def test_the_corpus_is_wide_enough(corpus):
    producers = {e.producer.split(" (")[0] for e in corpus.ENTRIES}
    assert len(corpus.ENTRIES) >= 15 and len(producers) >= 6
    tasks = " ".join(e.task for e in corpus.ENTRIES)
    for kind in ("classification", "detection", "segmentation", "encoder", "KV cache", "audio", "OCR", "LSTM",
                 "classic ML", "already quantized", "dims -1"):
        assert kind in tasks, kind


@pytest.mark.parametrize("name", ["random-forest", "lightgbm", "xgboost"])
def test_classic_ml_matches_onnxruntime_or_names_the_missing_ops(corpus, cache, name):
    pytest.importorskip("skl2onnx")
    pytest.importorskip("onnxmltools")
    row = corpus.check(_entry(corpus, name), cache, int8=False, int4=False)
    assert "error" not in row, row
    assert row["fp32"]["onnxruntime:cpu"].startswith("pass"), row
    for target in ("openvino:cpu", "xla:cpu"):
        cell = row["fp32"][target]
        assert cell.startswith("pass") or cell.startswith("unsupported: ai.onnx.ml"), (target, cell)


def test_a_transformers_vit_passes_fp32_and_int8_weight_everywhere(corpus, cache):
    pytest.importorskip("transformers")
    row = corpus.check(_entry(corpus, "vit"), cache)
    assert "error" not in row, row
    assert all(cell.startswith("pass") for cell in row["fp32"].values()), row["fp32"]
    assert all(cell.startswith("pass") for cell in row["int8-weight"].values()), row["int8-weight"]
    assert "| vit |" in corpus.table([row])


def test_a_transformers_vit_int4_artifact_is_read_alike_by_every_backend(corpus, cache):
    """int4 portable by construction: one artifact, every CPU backend compiles it and matches the artifact
    itself run literally (DequantizeLinear, then the float op) to the real-model bar."""
    pytest.importorskip("transformers")
    row = corpus.check(_entry(corpus, "vit"), cache, int8=False)
    assert set(row["int4-weight"]) == set(corpus.TARGETS)
    assert all(cell.startswith("pass") for cell in row["int4-weight"].values()), row["int4-weight"]
    assert "int4-w onnxruntime" in corpus.table([row])


def test_a_model_with_nothing_to_quantize_at_int4_says_so(corpus, cache):
    pytest.importorskip("skl2onnx")
    row = corpus.check(_entry(corpus, "scaler-logreg"), cache, int8=False)
    assert "error" not in row, row
    assert set(row["int4-weight"].values()) == {corpus.NOTHING_TO_QUANTIZE}, row["int4-weight"]
