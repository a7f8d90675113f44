"""`portarun hardware`: sourced profiles and this machine's measured bandwidth and FLOP/s."""

from __future__ import annotations

import json

from click.testing import CliRunner

from portarun.cli import main


def test_json_lists_sourced_profiles():
    result = CliRunner().invoke(main, ["hardware", "--json", "-", "--no-measure"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    h100 = data["profiles"]["h100-sxm"]
    assert h100["bandwidth_tbs"]["value"] == 3.35 and h100["tdp_w"]["value"] == 700
    for profile in data["profiles"].values():
        for key in ("memory_gb", "bandwidth_tbs", "fp16_tflops", "int8_tops", "tdp_w", "capex_usd",
                    "cloud_usd_per_hour"):
            value = profile[key]
            if value["value"] is not None:  # every value carries its source, date and tag
                assert value["source"] and value["date"] and value["tag"] in ("R", "I", "U")
    assert data["profiles"]["mi300x"]["int8_tops"]["tag"] == "U"  # sparse/dense conflict kept visible
    assert data["local"] is None


def test_table_and_local_measurement():
    result = CliRunner().invoke(main, ["hardware"])
    assert result.exit_code == 0, result.output
    assert "h100-sxm" in result.output and "3.35 [R]" in result.output
    assert "copy bandwidth" in result.output and "GFLOP/s" in result.output
