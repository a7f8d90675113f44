"""`portarun quantize --check-targets`: compile the result on each named target before writing it."""

from __future__ import annotations

from click.testing import CliRunner

from portarun.cli import main


def test_check_targets_compiles_before_writing(tmp_path):
    out = tmp_path / "mlp.int4.onnx"
    result = CliRunner().invoke(main, ["quantize", "builtin:mlp", "-p", "int4-weight", "--check-targets",
                                       "onnxruntime:cpu,reference", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "compiles on onnxruntime:cpu,reference" in result.output and out.exists()


def test_a_target_that_refuses_fails_early_and_writes_nothing(tmp_path):
    out = tmp_path / "mlp.int4.onnx"
    result = CliRunner().invoke(main, ["quantize", "builtin:mlp", "-p", "int4-weight", "--check-targets",
                                       "onnxruntime:cpu,nosuchbackend:cpu", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code != 0
    assert "does not compile on nosuchbackend:cpu" in result.output and "nothing written" in result.output
    assert not out.exists()
