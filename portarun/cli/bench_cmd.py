"""`portarun bench`: parse the options, open the executable, call ``portarun.benchmark.sweep`` and
print its rows: latency, throughput, tokens/s, memory, energy and cost per 1M tokens per batch size,
with the cheapest batch that meets a latency limit marked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from . import suite
from ._common import lazy, parse_dims, parse_options, table
from .fleet_options import fleet_options, parse_accelerator_types
from .hardware_cmd import assumptions_from, cost_options
from .feed_options import feed_source_options, feeds_from_options, has_user_feeds
from .options import (backend_options_option, dims_option, emit_json, isolate_option, json_option, precision_option,
                      runs_option, seed_option, target_option, timeout_option, warmup_option)

if TYPE_CHECKING:
    from ..benchmark import SweepResult

SweepConfig, choose_batch, sweep = (lazy(".benchmark", n) for n in ("SweepConfig", "choose_batch", "sweep"))

__all__ = ["bench", "choose_batch"]  # choose_batch: re-exported for older imports; it lives in portarun.benchmark


def _batches(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got '{text}'", param_hint="--batch") from None
    if not values or any(v < 1 for v in values):
        raise click.BadParameter("batch sizes must be positive integers", param_hint="--batch")
    return values


def open_executable(source: str, target: str | None, precision: str, options: tuple[str, ...], *,
                    isolate: bool = False, timeout: float | None = None) -> Any:
    """A compiled artifact as stored, or a model compiled for ``target`` (in a worker with ``isolate``)."""
    from ..api import compile as compile_model
    from ..api import load, load_compiled
    from ..artifact import is_artifact

    if is_artifact(source):
        return load_compiled(source, target, isolate=isolate, timeout=timeout)
    if not target:
        from ..errors import UsageError

        raise UsageError("--target is required for a model (e.g. -t onnxruntime:cpu)")
    return compile_model(load(source), target, precision, isolate=isolate, timeout=timeout, **parse_options(options))


def _user_feeds(source: str, executable: Any, values: dict[str, Any], dims: tuple[str, ...]) -> list | None:
    """The user's samples (--inputs/--input/--text), checked against the executable, or the model file
    when the sweep runs elsewhere (--ray); None: random feeds per batch size."""
    if not has_user_feeds(values):
        return None
    from ..api import load

    return feeds_from_options(executable if executable is not None else load(source), values,
                              dims=parse_dims(dims)).samples


@click.command("bench")
@click.argument("model_or_artifact")
@target_option()
@precision_option()
@backend_options_option()
@click.option("--batch", "batch_text", default="1", show_default=True, help="Batch sizes to sweep, e.g. 1,2,4,8.")
@click.option("--seq", type=int, help="Sequence length for models with a sequence axis.")
@dims_option("Size of another symbolic dim.")
@runs_option(20, "Timed runs per batch size.")
@warmup_option(3)
@seed_option()
@click.option("--max-latency-ms", type=float,
              help="Latency limit (TTFT for decoders): mark the cheapest batch that meets it.")
@click.option("--new-tokens", default=32, show_default=True, help="Decoders: tokens generated per run.")
@cost_options
@feed_source_options
@json_option("Write the results as JSON to PATH ('-': stdout).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="PNG of latency and cost vs batch.")
@fleet_options
@isolate_option()
@timeout_option()
def bench(model_or_artifact: str, target: str | None, precision: str, options: tuple[str, ...], batch_text: str,
          seq: int | None, dims: tuple[str, ...], runs: int, warmup: int, seed: int, max_latency_ms: float | None,
          new_tokens: int, hardware: str | None, price_per_hour: float | None, utilization: float | None,
          pue: float | None, kwh_price: float | None, lifetime_years: float | None, basis: str,
          json_path: str | None, plot_path: str | None, ray: str | None, placement_timeout_s: float,
          accelerator_types: tuple[str, ...], isolate: bool, timeout: float | None, **feed_values: Any) -> None:
    """Measure MODEL_OR_ARTIFACT on TARGET: warm-up, then median/p99 latency, items/s, tokens/s,
    peak memory, energy (RAPL/NVML when readable) and $/1M tokens for each batch size.

    \b
    Examples:
      portarun bench builtin:transformer -t onnxruntime:cpu --batch 1,2,4,8 --max-latency-ms 20
      portarun bench build/model.ort --batch 1,8 --seq 128 --hardware h100-sxm --json bench.json
      portarun bench builtin:mlp -t onnxruntime:cuda --ray auto --batch 1,8,32
    """
    from ..models import builtin_default_dims

    config = SweepConfig(batches=_batches(batch_text), seq=seq, runs=runs, warmup=warmup,
                         max_latency_ms=max_latency_ms, new_tokens=new_tokens, seed=seed,
                         dims={**builtin_default_dims(model_or_artifact), **parse_dims(dims)})
    assumptions = assumptions_from(price_per_hour, utilization, pue, kwh_price, lifetime_years, basis)
    if ray:  # the sweep runs on a Ray node that offers the target (portarun_conformance.fleet)
        config.feeds = _user_feeds(model_or_artifact, None, feed_values, dims)
        result, node = suite.fleet().sweep_on_ray(
            model_or_artifact, target, precision, address=ray, config=config, options=parse_options(options),
            hardware=hardware, assumptions=assumptions, placement_timeout_s=placement_timeout_s,
            accelerator_types=parse_accelerator_types(accelerator_types))
    else:
        result, node = _sweep_here(model_or_artifact, target, precision, options, config, hardware, assumptions,
                                   isolate, timeout, feed_values, dims), None
    _report(result, node, json_path, plot_path, max_latency_ms)


def _sweep_here(source: str, target: str | None, precision: str, options: tuple[str, ...], config: SweepConfig,
                hardware: str | None, assumptions: Any, isolate: bool, timeout: float | None,
                feed_values: dict[str, Any], dims: tuple[str, ...]) -> SweepResult:
    with open_executable(source, target, precision, options, isolate=isolate, timeout=timeout) as exe:
        config.feeds = _user_feeds(source, exe, feed_values, dims)
        profile = suite.hardware().profile_for(hardware, str(exe.target))
        return sweep(exe, config, profile=profile, assumptions=assumptions)


def _report(result: SweepResult, node: dict[str, Any] | None, json_path: str | None, plot_path: str | None,
            max_latency_ms: float | None) -> None:
    if not emit_json({**result.to_dict(), **({"node": node} if node else {})}, json_path):
        (print_decoder_sweep if result.decoder else print_sweep)(result)
        if node:
            click.echo(f"ran on Ray node {node['hostname']} ({node['node_id'][:12]}), {node['environment']['cpu']}")
    if plot_path:
        suite.plot().plot_sweep(result.rows, plot_path, title=f"{result.model} on {result.provenance['target']} "
                                f"{result.provenance['precision']}", max_latency_ms=max_latency_ms)


def _money(value: float | None) -> str:
    return f"${value:.4g}" if value is not None else "-"


def _fraction(value: float | None) -> str:
    return f"{value:.2%}" if value is not None else "-"


def _priced_with(result: SweepResult) -> str:
    return f"priced with {result.profile.name if result.profile else 'no profile'}: {result.hourly.basis}"


def print_sweep(result: SweepResult) -> None:
    prov, hourly, limit = result.provenance, result.hourly, result.config.max_latency_ms
    click.echo(f"{result.model} on {prov['target']} at {prov['precision']} ({prov['device']}); "
               f"{result.config.runs} runs after {result.config.warmup} warm-up; {_priced_with(result)}"
               + (f", ${hourly.usd_per_hour:.4g}/h" if hourly.usd_per_hour is not None else f" ({hourly.note})"))
    rows = []
    for r in result.rows:
        b = r["benchmark"]
        energy = b["energy"]["joules_per_run"]
        rows.append([("* " if r["chosen"] else "  ") + str(r["batch"]), f"{r['median_ms']:.3f}", f"{r['p99_ms']:.3f}",
                     f"{b['items_per_second']:.4g}", f"{b['tokens_per_second']:.4g}" if b["tokens_per_second"] else "-",
                     f"{b['peak_memory_bytes'] / 2**20:.0f}", f"{energy:.3g}" if energy is not None else "n/m",
                     _money(r["usd_per_million"]), _fraction(r["roofline_fraction"])])
    click.echo(table(["batch", "median ms", "p99 ms", "items/s", "tokens/s", "peak MiB", "J/run",
                      f"$/1M {result.unit}", "of roofline"], rows))
    energy = result.rows[0]["benchmark"]["energy"]
    if energy["sensor"] == "none":
        click.echo(f"energy: not measured ({energy['note']})")
    chosen = result.chosen
    if limit is not None:
        click.echo(f"* batch {chosen['batch']}: lowest cost meeting {limit:g} ms" if chosen else
                   f"no batch size meets {limit:g} ms")
    elif chosen is not None:
        click.echo(f"* batch {chosen['batch']}: lowest cost (no latency limit given)")


def print_decoder_sweep(result: SweepResult) -> None:
    prov, limit = result.provenance, result.config.max_latency_ms
    click.echo(f"{result.model} on {prov['target']} at {prov['precision']}: greedy generation of "
               f"{result.config.new_tokens} tokens, median of {min(result.config.runs, 3)} runs after "
               f"{result.config.warmup} warm-up; "
               f"{_priced_with(result)}")
    rows = [[("* " if r["chosen"] else "  ") + str(r["batch"]), f"{r['decoder']['ttft_ms']:.2f}",
             f"{r['decoder']['tpot_median_ms']:.2f}", f"{r['decoder']['tpot_p99_ms']:.2f}", f"{r['per_second']:.4g}",
             _money(r["usd_per_million"]), _fraction(r["roofline_fraction"])] for r in result.rows]
    click.echo(table(["batch", "TTFT ms", "TPOT ms", "TPOT p99 ms", "decode tok/s", "$/1M tokens",
                      "of roofline"], rows))
    chosen = result.chosen
    if limit is not None:
        click.echo(f"* batch {chosen['batch']}: lowest cost with TTFT within {limit:g} ms" if chosen else
                   f"no batch size has TTFT within {limit:g} ms")
