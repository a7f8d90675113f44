"""`portarun hardware`: the known hardware profiles (each value sourced and dated), plus this machine's
measured memory bandwidth and matmul FLOP/s. Also the cost options shared by `conformance` and `bench`."""

from __future__ import annotations

from typing import Any, Callable

import click

from . import suite
from ._common import table
from .options import emit_json, json_option


def cost_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--hardware, --price-per-hour, --utilization, --pue, --kwh-price, --lifetime-years, --basis."""
    options = [
        click.option("--hardware", metavar="PROFILE",
                     help="Hardware profile to price with (`portarun hardware` lists them); default: this "
                          "machine ('local') for CPU targets."),
        click.option("--price-per-hour", type=float, help="USD per hour of the device; replaces capex + energy."),
        click.option("--utilization", type=float, help="Fraction of hours the owned device is busy [default 0.6]."),
        click.option("--pue", type=float, help="Data-centre power usage effectiveness [default 1.25]."),
        click.option("--kwh-price", type=float, help="Electricity, USD per kWh [default 0.06]."),
        click.option("--lifetime-years", type=float, help="Depreciation period of an owned device [default 5]."),
        click.option("--basis", type=click.Choice(["auto", "cloud", "owned"]), default="auto", show_default=True,
                     help="Price a profile by its cloud $/hour or as owned (capex + energy)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def assumptions_from(price_per_hour: float | None, utilization: float | None, pue: float | None,
                     kwh_price: float | None, lifetime_years: float | None, basis: str = "auto"):
    return suite.hardware().default_assumptions(price_per_hour_usd=price_per_hour, utilization=utilization, pue=pue,
                               kwh_price_usd=kwh_price, lifetime_years=lifetime_years, basis=basis)


def _cell(sourced: Any, fmt: str = "g") -> str:
    if sourced.value is None:
        return "-"
    return f"{format(sourced.value, fmt)} [{sourced.tag}]"


@click.command("hardware")
@json_option("Write the profiles as JSON to PATH ('-': stdout), with every source and date.")
@click.option("--no-measure", is_flag=True, help="List the profiles only; skip measuring this machine.")
def hardware(json_path: str | None, no_measure: bool) -> None:
    """List hardware profiles and measure this machine's bandwidth and matmul FLOP/s.

    Tags: [R] read in the source, [I] inferred or computed, [U] uncertain, [M] measured here.

    \b
    Examples:
      portarun hardware
      portarun hardware --json hardware.json
    """
    profiles = suite.hardware()
    known = profiles.profiles()
    measurement = None if no_measure else profiles.measure_local()
    local = None if measurement is None else profiles.local_profile(measurement)
    if json_path:
        data = {"profiles": {name: p.to_dict() for name, p in known.items()}, "cost_defaults": profiles.cost_defaults(),
                "local": None if local is None else {"measurement": measurement.to_dict(), "profile": local.to_dict()}}
        if emit_json(data, json_path):
            return
    rows = []
    for name, p in known.items():
        rows.append([name, p.description, _cell(p.memory_gb), _cell(p.bandwidth_tbs), _cell(p.fp16_tflops),
                     _cell(p.int8_tops), _cell(p.tdp_w), _cell(p.capex_usd, ",.0f"), _cell(p.cloud_usd_per_hour)])
    click.echo(table(["profile", "device", "mem GB", "TB/s", "FP16 TFLOPS", "INT8 TOPS", "TDP W", "capex $",
                      "cloud $/h"], rows))
    defaults = profiles.cost_defaults()
    click.echo("\ncost defaults: " + ", ".join(f"{k} {v['value']} ({v['source']})" for k, v in defaults.items()))
    if measurement is not None:
        click.echo(f"\nthis machine ({measurement.cpu}, {measurement.cores} cores, measured in "
                   f"{measurement.seconds:.1f} s): copy bandwidth {measurement.bandwidth_gbs:.1f} GB/s "
                   f"(read+write, {measurement.copy_mib} MiB), float32 matmul {measurement.matmul_gflops:.1f} GFLOP/s "
                   f"(n={measurement.matmul_n})")
        if local is not None and local.tdp_w.value is not None:
            click.echo(f"power charged to it: {local.tdp_w.value:g} W [I] ({local.tdp_w.source})")
