"""tools/bench_decode.py end to end on decoder-tiny and ONNX Runtime: every precision gets a row with its
speed, bytes per step, and next-token agreement with fp32 (fp32 against itself: exactly 1). No timings asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "bench_decode.py"


def test_bench_decode_rows_carry_agreement_and_bytes(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PORTARUN_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(TOOL), "--model", "decoder-tiny", "--targets", "onnxruntime:cpu",
                           "--new-tokens", "6", "--repeats", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = {r["precision"]: r for r in result["rows"]}
    assert set(rows) == {"fp32", "int8-weight", "int4-weight"}
    assert rows["fp32"]["next_token_agreement"] == 1.0 and rows["fp32"]["tokens_equal_to_fp32"] == 1.0
    for precision in ("int8-weight", "int4-weight"):
        row = rows[precision]
        low, high = row["next_token_agreement_ci95"]
        assert 0.0 <= low <= row["next_token_agreement"] <= high <= 1.0
        assert row["bytes_per_step"] < rows["fp32"]["bytes_per_step"]
    assert rows["int4-weight"]["bytes_per_step"] < rows["int8-weight"]["bytes_per_step"]
    assert "quantized decoder-tiny to int4-weight" in done.stderr  # a fresh cache quantizes, and says so


def test_variants_add_named_int8_dynamic_rows_on_openvino(tmp_path):
    from portarun.plugin import cpu_features

    if cpu_features().capped_by:
        pytest.skip("OpenVINO picks its dynamic-quantization kernel from CPUID, which ONEDNN_MAX_CPU_ISA does not "
                    "cap: oneDNN then refuses the primitive (a real AVX2-only CPU compiles it)")
    out = tmp_path / "bench.json"
    env = {**os.environ, "PORTARUN_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(TOOL), "--model", "decoder-tiny", "--targets", "openvino:cpu",
                           "--new-tokens", "4", "--repeats", "1", "--variants", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    named = {r["precision"]: r for r in rows if r["variant"] == "int8-dynamic"}
    assert set(named) == {"int8-weight", "int4-weight"}  # a variant of the weight-only precisions only
    for row in named.values():
        details = row["provenance"]["details"]
        assert details["activations"] == "int8-dynamic" and details["dynamic_quantization_group_size"] == 32
        assert 0.0 <= row["next_token_agreement"] <= 1.0
    plain = [r for r in rows if r["precision"] == "int4-weight" and not r["variant"]]
    assert plain and plain[0]["provenance"]["details"]["activations"] == "float"


@pytest.mark.parametrize("targets, message", [
    ("onnxruntime:cpu,openvino:cpux", "openvino has no device kind 'cpux'"),
    ("onnxrt:cpu", "no backend named 'onnxrt'"),
    ("a:b:c:d", "cannot parse target"),
])
def test_a_mistyped_target_is_a_usage_error_before_any_work(targets, message):
    done = subprocess.run([sys.executable, str(TOOL), "--targets", targets], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "copy bandwidth" not in done.stdout  # refused before measuring or quantizing anything
