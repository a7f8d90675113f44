"""`portarun bench`: batch sweep, cost per 1M, the cheapest batch under a latency limit."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from portarun.cli import main
from portarun.cli.bench_cmd import choose_batch


def test_batch_sweep_with_price_and_plot(tmp_path):
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    result = CliRunner().invoke(main, ["bench", "builtin:mlp", "-t", "onnxruntime:cpu", "--batch", "1,4",
                                       "--runs", "3", "--price-per-hour", "3.6", "--max-latency-ms", "10000",
                                       "--json", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["batch"] for r in data["rows"]] == [1, 4]
    for row in data["rows"]:
        assert row["unit"] == "items"  # the MLP has no sequence axis
        assert row["usd_per_million"] == pytest.approx(3.6 / (row["per_second"] * 3600) * 1e6)
    assert sum(r["chosen"] for r in data["rows"]) == 1
    assert "lowest cost meeting 10000 ms" in result.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_sequence_models_report_tokens():
    result = CliRunner().invoke(main, ["bench", "builtin:transformer", "-t", "onnxruntime:cpu", "--seq", "8",
                                       "--runs", "2", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    assert "$/1M tokens" in result.output


def test_choose_batch_prefers_cheapest_within_the_limit():
    rows = [{"batch": 1, "median_ms": 5.0, "per_second": 200.0, "usd_per_million": 3.0},
            {"batch": 8, "median_ms": 20.0, "per_second": 400.0, "usd_per_million": 1.5},
            {"batch": 32, "median_ms": 90.0, "per_second": 350.0, "usd_per_million": 1.7}]
    assert choose_batch(rows, 50.0)["batch"] == 8
    assert choose_batch(rows, 10.0)["batch"] == 1
    assert choose_batch(rows, 1.0) is None
    unpriced = [dict(r, usd_per_million=None) for r in rows]
    assert choose_batch(unpriced, None)["batch"] == 8  # highest throughput when nothing is priced


def test_bad_batch_list_is_a_usage_error():
    result = CliRunner().invoke(main, ["bench", "builtin:mlp", "-t", "onnxruntime:cpu", "--batch", "1,x"])
    assert result.exit_code == 2


def test_decoder_reports_ttft_tpot_and_decode_cost(tmp_path):
    out = tmp_path / "d.json"
    result = CliRunner().invoke(main, ["bench", "builtin:decoder-tiny", "-t", "onnxruntime:cpu", "--batch", "1,2",
                                       "--new-tokens", "4", "--runs", "1", "--price-per-hour", "3.6",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "TTFT ms" in result.output and "TPOT ms" in result.output
    rows = json.loads(out.read_text())["rows"]
    for row in rows:
        gen = row["decoder"]
        assert row["median_ms"] == gen["ttft_ms"]  # the latency limit applies to time to first token
        assert gen["generated_tokens"] == 4 * row["batch"]
        assert row["usd_per_million"] == pytest.approx(3.6 / (gen["decode_tokens_per_s"] * 3600) * 1e6)
