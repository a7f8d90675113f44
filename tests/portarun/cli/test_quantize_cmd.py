import json

import numpy as np
import pytest
from click.testing import CliRunner

import portarun
from portarun.cli import main
from portarun.model import quantization_of


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args, code=0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return invoke


def test_int8_with_npz_calibration_writes_model_and_report(cli, tmp_path):
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32))
    out, report = tmp_path / "mlp.int8.onnx", tmp_path / "report.json"
    text = cli("quantize", "builtin:mlp", "-p", "int8", "--calibration", str(calib), "--method", "percentile",
               "--report", str(report), "-o", str(out)).output
    assert "quantized to int8" in text and "8 samples from" in text and "4 held-out samples" in text
    assert f"wrote {out}" in text
    assert quantization_of(portarun.load(out)) == "int8"
    data = json.loads(report.read_text())
    assert data["floor_met"] and data["calibration_method"] == "percentile"


def test_int4_random_calibration_options(cli, tmp_path):
    out = tmp_path / "tf.int4.onnx"
    text = cli("quantize", "builtin:transformer", "-p", "int4-weight", "--calibration-random", "3", "--seed", "2",
               "--dim", "seq=8", "--block-size", "32", "--asymmetric", "--exclude", "layer0.ffn.down.matmul",
               "-o", str(out)).output
    assert "block size 32, asymmetric" in text and "3 random samples (seed 2)" in text
    assert "layer0.ffn.down.matmul (MatMul): float - excluded by request" in text
    assert portarun.load(out).opset == 21


def test_floor_not_met_writes_nothing_unless_allowed(cli, tmp_path):
    out = tmp_path / "m.onnx"
    result = cli("quantize", "builtin:mlp", "-p", "int4-weight", "--accuracy-floor", "max_abs=0", "-o", str(out),
                 code=1)
    assert "NOT met" in result.output and "nothing written" in result.output and not out.exists()
    cli("quantize", "builtin:mlp", "-p", "int4-weight", "--accuracy-floor", "max_abs=0", "--allow-below-floor",
        "-o", str(out))
    assert out.exists()


@pytest.mark.parametrize("args, message", [
    (["-p", "int8", "--calibration", "c.npz", "--calibration-random", "2"], "not both"),
    (["-p", "fp16"], "Invalid value for '-p'"),
    (["-p", "int8", "--accuracy-floor", "psnr=3"], "unknown accuracy floor"),
    (["-p", "int8", "--calibration", "missing.npz"], "does not exist"),
])
def test_bad_arguments(cli, tmp_path, args, message):
    result = cli("quantize", "builtin:mlp", *args, "-o", str(tmp_path / "x.onnx"), code=2)
    assert message in result.output


def test_already_quantized_input(cli, tmp_path):
    path = portarun.quantize("builtin:mlp", "int8-weight").save(tmp_path / "q.onnx")
    result = cli("quantize", str(path), "-p", "int8", "-o", str(tmp_path / "qq.onnx"), code=2)
    assert "already quantized" in result.output


def test_compile_says_it_quantized_implicitly(cli, tmp_path):
    text = cli("compile", "builtin:mlp", "-t", "onnxruntime:cpu", "-p", "int8", "-o", str(tmp_path / "art")).output
    assert "quantized the float model to int8 first" in text
