import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from portarun.cli import COMMANDS, main


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args, code=0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output + (result.stderr if hasattr(result, "stderr") else "")
        return result

    return invoke


def test_help_lists_every_command_with_examples(cli):
    text = cli("--help").output
    for name in COMMANDS:
        assert name in text
        assert "Examples:" in cli(name, "--help").output


def test_backends_table_and_json(cli):
    text = cli("backends").output
    assert "onnxruntime" in text and "onnxruntime:cpu" in text and "reference" in text
    data = json.loads(cli("backends", "--json", "-").output)
    ort = next(d for d in data if d["name"] == "onnxruntime")
    assert ort["available"] and "onnxruntime:cpu" in ort["devices"] and "fp32" in ort["precisions"]
    assert "threads" in cli("backends", "--options").output


def test_inspect_builtin_text_and_json(cli):
    text = cli("inspect", "builtin:transformer").output
    assert "[batch, seq, 256]" in text and "LayerNormalization" in text and "parameters 789,770" in text
    data = json.loads(cli("inspect", "builtin:cnn", "--json", "-").output)
    assert data["op_histogram"]["Conv"] == 3 and data["opsets"] == {"ai.onnx": 17}
    assert data["inputs"][0]["shape"] == ["batch", 3, 32, 32]


def test_compile_then_run_artifact_and_save_outputs(cli, tmp_path):
    out_dir = tmp_path / "mlp.ort"
    text = cli("compile", "builtin:mlp", "-t", "onnxruntime:cpu", "--option", "threads=1", "-o", str(out_dir)).output
    assert "compiled mlp for onnxruntime:cpu" in text and (out_dir / "manifest.json").exists()
    outputs = tmp_path / "out.npz"
    text = cli("run", str(out_dir), "--random", "--seed", "3", "--dim", "batch=2", "-o", str(outputs)).output
    assert "logits: float32[2, 10]" in text
    with np.load(outputs) as saved:
        assert saved["logits"].shape == (2, 10)


def test_run_with_input_files_matches_reference(cli, tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "feeds.npz", x=x)
    cli("run", "builtin:mlp", "-t", "onnxruntime:cpu", "--input", f"x={tmp_path / 'x.npy'}", "-o",
        str(tmp_path / "a.npz"))
    cli("run", "builtin:mlp", "-t", "reference", "--inputs", str(tmp_path / "feeds.npz"), "-o",
        str(tmp_path / "b.npz"))
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["run", "missing.onnx", "-t", "onnxruntime:cpu", "--random"], "does not exist"),
    (["run", "builtin:mlp", "-t", "onnxruntime:gpu0", "--random"], "no device kind"),
    (["run", "builtin:mlp", "-t", "nosuch:cpu", "--random"], "no backend named 'nosuch'"),
    (["run", "builtin:mlp", "-t", "onnxruntime:cpu", "-p", "fp8", "--random"], "unknown precision"),
    (["compile", "builtin:mlp", "-t", "onnxruntime:cuda", "-o", "x"], "onnxruntime-gpu"),
    (["run", "builtin:mlp", "-t", "onnxruntime:cpu", "--inputs", "nope.npz"], "does not exist"),
])
def test_errors_exit_2_with_one_line(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


def test_wrong_feed_is_exit_2(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 63), np.float32))
    result = CliRunner().invoke(main, ["run", "builtin:mlp", "-t", "reference", "--input", f"x={tmp_path}/x.npy"])
    assert result.exit_code == 2 and "dim 1 must be 64, got 63" in result.output


def test_usage_errors(cli):
    assert "give the inputs" in cli("run", "builtin:mlp", "-t", "reference", code=2).output
    assert "missing -t/--target" in cli("compile", "builtin:mlp", "-o", "x", code=2).output
    assert "expected NAME=VALUE" in cli("run", "builtin:mlp", "-t", "reference", "--input", "x", code=2).output


def test_debug_shows_traceback():
    with pytest.raises(Exception, match="does not exist"):
        CliRunner().invoke(main, ["--debug", "inspect", "missing.onnx"], catch_exceptions=False)


def test_real_subprocess(tmp_path):
    """The installed console script, end to end, as a user runs it."""
    exe = [sys.executable, "-m", "portarun"]
    done = subprocess.run(exe + ["run", "builtin:cnn", "-t", "onnxruntime:cpu", "--random"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "logits: float32[1, 10]" in done.stdout
    bad = subprocess.run(exe + ["inspect", str(tmp_path / "nope.onnx")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
