"""Text in, text out with a real Hugging Face decoder: a tiny LlamaForCausalLM (GQA) built offline
from a config with seeded weights, exported by portarun, with a WordLevel tokenizer trained here."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import portarun
from portarun.errors import InputError, UsageError
from portarun.generate import DecoderNames, Sampling, generate
from portarun.text_generation import eos_ids, generate_text
from portarun.text_feeds import load_tokenizer

SENTENCES = ["the cat sat on the mat", "the dog ran in the park", "a bird sang in the tree", "the sun is warm today"]
CPU_TARGETS = ("onnxruntime:cpu", "openvino:cpu", "xla:cpu")


def build_tiny_llama(folder):
    """A 2-layer Llama (4 heads, 2 KV heads) and its tokenizer in ``folder``, as save_pretrained writes them."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<s>", "</s>"]))
    tok.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    transformers.LlamaForCausalLM(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from portarun.hf_export import export_hf

    folder = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    return folder, export_hf(folder, "text-generation")


def _available(target):
    return target.split(":")[0] in {b.name for b in portarun.list_backends() if b.available}


def test_greedy_text_is_identical_on_every_cpu_backend(llama):
    folder, model = llama
    texts = {}
    for target in CPU_TARGETS:
        if not _available(target):
            continue
        with portarun.compile(model, target, "fp32") as exe:
            out = generate_text(exe, folder, "the cat sat", max_new_tokens=10)
        assert out.result.cache == ("static" if target.startswith("xla") else "dynamic")  # --cache auto
        assert out.prompt_tokens == load_tokenizer(folder).encode("the cat sat").ids
        assert len(out.tokens) == 10 or out.stopped_at_eos
        texts[target] = (out.text, out.tokens)
        timings = out.to_dict()["timings"]
        assert timings["generated_tokens"] == len(out.tokens) and timings["tokens_per_s"] > 0
    assert len(set(map(str, texts.values()))) == 1, texts
    assert texts["onnxruntime:cpu"][0] and all(w in " ".join(SENTENCES) for w in texts["onnxruntime:cpu"][0].split())


def test_sampling_is_seeded_and_top_k_1_is_greedy(llama):
    folder, model = llama
    with portarun.compile(model, "onnxruntime:cpu") as exe:
        greedy = generate_text(exe, folder, "a bird", max_new_tokens=8).tokens
        first = generate_text(exe, folder, "a bird", max_new_tokens=8, sampling=Sampling(1.5, seed=3)).tokens
        again = generate_text(exe, folder, "a bird", max_new_tokens=8, sampling=Sampling(1.5, seed=3)).tokens
        other = [generate_text(exe, folder, "a bird", max_new_tokens=8, sampling=Sampling(1.5, seed=s)).tokens
                 for s in range(4, 8)]
        narrow = generate_text(exe, folder, "a bird", max_new_tokens=8, sampling=Sampling(2.0, top_k=1, seed=9)).tokens
        nucleus = generate_text(exe, folder, "a bird", max_new_tokens=8,
                                sampling=Sampling(2.0, top_p=1e-6, seed=9)).tokens
    assert first == again and any(o != first for o in other)
    assert narrow == greedy and nucleus == greedy  # only the top token is left to sample
    with pytest.raises(UsageError, match="top_p"):
        Sampling(1.0, top_p=1.5)


def test_eos_comes_from_the_model_folder_and_stops_generation(llama):
    folder, model = llama
    assert eos_ids(folder, load_tokenizer(folder)) == [3]
    with portarun.compile(model, "onnxruntime:cpu") as exe:
        free = generate_text(exe, folder, "the dog", max_new_tokens=6, stop_at_eos=False)
        stop_at = free.tokens[2]  # pretend the third token is the end of sequence
        stopped = generate_text(exe, folder, "the dog", max_new_tokens=6, eos_token_id=stop_at)
    assert stopped.tokens == free.tokens[:free.tokens.index(stop_at) + 1] and stopped.stopped_at_eos
    with pytest.raises(InputError, match="no prompt"):
        generate_text(exe, folder)


def _renamed_decoder() -> portarun.Model:
    """decoder-tiny as another exporter might name it, plus a merged decoder's use_cache_branch input."""
    proto = onnx.ModelProto()
    proto.CopyFrom(portarun.models.build("decoder-tiny").proto)
    rename = {"input_ids": "tokens", "logits": "lm_logits"}
    for i in range(2):
        for kind in ("key", "value"):
            rename[f"past_key_values.{i}.{kind}"] = f"cache_in_{i}_{kind}"
            rename[f"present.{i}.{kind}"] = f"cache_out_{i}_{kind}"
    for vi in list(proto.graph.input) + list(proto.graph.output):
        vi.name = rename.get(vi.name, vi.name)
    for node in proto.graph.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    proto.graph.input.append(onnx.helper.make_tensor_value_info("use_cache_branch", onnx.TensorProto.BOOL, [1]))
    return portarun.load(proto)


def test_a_decoder_with_other_names_is_mapped_not_edited():
    renamed = _renamed_decoder()
    names = ["input_ids=tokens", "logits=lm_logits", "past=cache_in_{i}_{kind}", "present=cache_out_{i}_{kind}"]
    prompt = [5, 9, 17, 3]
    with portarun.compile(portarun.models.build("decoder-tiny"), "onnxruntime:cpu") as exe:
        expected = generate(exe, prompt, 8).tokens
    with portarun.compile(renamed, "onnxruntime:cpu") as exe:
        with pytest.raises(InputError, match="map other names with --names"):
            generate(exe, prompt, 8)
        np.testing.assert_array_equal(generate(exe, prompt, 8, names=names).tokens, expected)
        np.testing.assert_array_equal(generate(exe, prompt, 8, names=names, cache="static").tokens, expected)
    with pytest.raises(UsageError, match="must contain"):
        DecoderNames.parse(["past=cache"])


def test_generate_command_prints_text_and_writes_tokens_and_timings(llama, tmp_path):
    from click.testing import CliRunner

    from portarun.cli import main

    folder, model = llama
    path = folder / "model.onnx"
    model.save(path)
    texts = {}
    for target in ("onnxruntime:cpu", "xla:cpu"):
        if not _available(target):
            continue
        report = tmp_path / f"{target.split(':')[0]}.json"
        result = CliRunner().invoke(main, ["generate", str(path), "-t", target, "--prompt", "the cat sat",
                                           "--max-new-tokens", "6", "--json", str(report)])
        assert result.exit_code == 0, result.output
        data = json.loads(report.read_text())
        assert data["precision"] == "fp32" and data["cache"] == ("static" if target.startswith("xla") else "dynamic")
        assert set(data["timings"]) >= {"ttft_ms", "tpot_median_ms", "tokens_per_s"} and len(data["tokens"]) <= 6
        texts[target] = data["text"]
    printed = CliRunner().invoke(main, ["generate", str(path), "-t", "onnxruntime:cpu", "--prompt", "the cat sat",
                                        "--max-new-tokens", "6", "--temperature", "0.7", "--top-k", "3"])
    assert printed.exit_code == 0 and printed.output.splitlines()[1].startswith("the cat sat")  # tokenizer beside the model
    assert len(set(texts.values())) == 1
