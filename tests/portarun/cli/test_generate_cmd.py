"""`portarun generate`: a built-in decoder on a target, text and JSON, and clear usage errors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import portarun
from portarun.cli import main


def invoke(*args, code=0):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_generate_tiny_prints_timings_and_counts():
    text = invoke("generate", "tiny", "-t", "onnxruntime:cpu", "--prompt-tokens", "4", "--new-tokens", "6",
                  "--batch", "2").output
    assert "decoder-tiny on onnxruntime:cpu" in text
    assert "batch 2, prompt 4 tokens, generated 12 tokens (5 decode steps)" in text
    assert "TTFT" in text and "TPOT median" in text and "tokens/s" in text


def test_generate_json_tokens_match_the_api_on_another_backend():
    data = json.loads(invoke("generate", "decoder-tiny", "-t", "reference", "--prompt-tokens", "5",
                             "--new-tokens", "8", "--cache", "static", "--bucket", "16", "--seed", "3",
                             "--json", "-").output)
    assert data["cache"] == "static" and data["capacity"] == 16 and data["decode_steps"] == 7
    assert data["provenance"]["backend"] == "reference"
    prompt = np.random.default_rng(3).integers(0, 256, size=(1, 5), dtype=np.int64)
    with portarun.compile("decoder-tiny", "onnxruntime:cpu") as exe:
        expected = portarun.generate(exe, prompt, 8).tokens
    assert data["tokens"] == expected.tolist()


def test_generate_quantized_precision():
    pytest.importorskip("portarun.quantize", reason="portarun.quantize is not available")
    result = CliRunner().invoke(main, ["generate", "tiny", "-t", "onnxruntime:cpu", "-p", "int8-weight",
                                       "--new-tokens", "4", "--json", "-"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["precision"] == "int8-weight" and data["generated_tokens"] == 4


@pytest.mark.parametrize("args, message", [
    (["generate", "tiny"], "missing -t/--target"),
    (["generate", "mlp", "-t", "onnxruntime:cpu"], "not a KV-cache decoder"),
    (["generate", "tiny", "-t", "onnxruntime:cpu", "--new-tokens", "0"], "at least 1"),
    (["generate", "nonexistent.onnx", "-t", "onnxruntime:cpu"], "does not exist"),
])
def test_generate_usage_errors(args, message):
    result = invoke(*args, code=2)
    assert message in result.output
