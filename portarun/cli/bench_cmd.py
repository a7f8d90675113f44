"""`portarun bench`: latency, throughput, tokens/s, memory, energy and cost per 1M tokens of one model
on one target, over a batch sweep, with the cheapest batch that meets a latency limit marked."""

from __future__ import annotations

import json
from typing import Any

import click

from .._atomic import atomic_write_text
from ._common import EXIT_USAGE, option_option, parse_dims, parse_options, precision_option, table, target_option
from .hardware_cmd import assumptions_from, cost_options


def _batches(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got '{text}'", param_hint="--batch") from None
    if not values or any(v < 1 for v in values):
        raise click.BadParameter("batch sizes must be positive integers", param_hint="--batch")
    return values


def _axis(inputs: Any, candidates: tuple[str, ...], position: int | None) -> str | None:
    """The symbolic dim name used for the batch (first axis) or the sequence."""
    for spec in inputs:
        for axis, dim in enumerate(spec.shape or ()):
            if isinstance(dim, str) and (dim in candidates or (position is not None and axis == position)):
                return dim
    return None


def _builtin_dims(name: str) -> dict[str, int]:
    """A built-in model's default feed sizes (seq 128 for the transformer), so a sweep measures them."""
    from pathlib import Path

    from .. import models

    bare = name[len("builtin:"):] if name.startswith("builtin:") else name
    if bare in models.names() and (name.startswith("builtin:") or not Path(name).exists()):
        return dict(models.get(bare).default_dims)
    return {}


def decoder_signature(exe: Any) -> Any | None:
    """The KV-cache layout when ``exe`` is a decoder (input_ids -> logits with past/present), else None."""
    from ..errors import PortarunError
    from ..generate import DecoderSignature

    try:
        return DecoderSignature.of(exe)
    except PortarunError:
        return None


def bench_decoder(exe: Any, sig: Any, batch: int, prompt_len: int, new_tokens: int, reps: int) -> dict[str, Any]:
    """Greedy generation: TTFT (prefill), TPOT (each later token), decode tokens/s; median of ``reps``."""
    import numpy as np

    from ..generate import generate

    rng = np.random.default_rng(0)
    prompt = rng.integers(0, sig.vocab or 100, size=(batch, prompt_len))
    generate(exe, prompt, 2)  # warm-up: both the prefill and the one-token shapes
    results = sorted((generate(exe, prompt, new_tokens) for _ in range(max(1, reps))), key=lambda r: r.total_s)
    best = results[len(results) // 2]
    kv_heads, head_dim = sig.kv_shape
    kv_per_position = len(sig.past) * kv_heads * head_dim * np.dtype(sig.cache_dtype).itemsize
    return {"ttft_ms": best.ttft_s * 1e3, "tpot_median_ms": best.tpot_median_s * 1e3,
            "tpot_p99_ms": best.tpot_p99_s * 1e3, "decode_tokens_per_s": best.decode_tokens_per_s,
            "generated_tokens": best.generated_tokens,
            # KV bytes one sequence reads per decode step, at the mean context length of the run
            "kv_bytes_per_token": kv_per_position * (prompt_len + new_tokens / 2)}


def choose_batch(rows: list[dict[str, Any]], max_latency_ms: float | None) -> dict[str, Any] | None:
    """The row meeting the latency limit at the lowest cost per 1M (or the highest throughput when unpriced)."""
    eligible = [r for r in rows if max_latency_ms is None or r["median_ms"] <= max_latency_ms]
    if not eligible:
        return None
    if all(r.get("usd_per_million") is not None for r in eligible):
        return min(eligible, key=lambda r: (r["usd_per_million"], r["median_ms"]))
    return max(eligible, key=lambda r: r["per_second"])


@click.command("bench")
@click.argument("model_or_artifact")
@target_option
@precision_option
@option_option
@click.option("--batch", "batch_text", default="1", show_default=True, help="Batch sizes to sweep, e.g. 1,2,4,8.")
@click.option("--seq", type=int, help="Sequence length for models with a sequence axis.")
@click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE", help="Size of another symbolic dim.")
@click.option("--runs", default=20, show_default=True, help="Timed runs per batch size.")
@click.option("--warmup", default=3, show_default=True, help="Untimed runs first.")
@click.option("--max-latency-ms", type=float,
              help="Latency limit (TTFT for decoders): mark the cheapest batch that meets it.")
@click.option("--new-tokens", default=32, show_default=True, help="Decoders: tokens generated per run.")
@cost_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="PNG of latency and cost vs batch.")
@click.pass_context
def bench(ctx: click.Context, model_or_artifact: str, target: str | None, precision: str, options: tuple[str, ...],
          batch_text: str, seq: int | None, dims: tuple[str, ...], runs: int, warmup: int,
          max_latency_ms: float | None, new_tokens: int, hardware: str | None, price_per_hour: float | None,
          utilization: float | None, pue: float | None, kwh_price: float | None, lifetime_years: float | None,
          basis: str, json_path: str | None, plot_path: str | None) -> None:
    """Measure MODEL_OR_ARTIFACT on TARGET: warm-up, then median/p99 latency, items/s, tokens/s,
    peak memory, energy (RAPL/NVML when readable) and $/1M tokens for each batch size.

    \b
    Examples:
      portarun bench builtin:transformer -t onnxruntime:cpu --batch 1,2,4,8 --max-latency-ms 20
      portarun bench build/model.ort --batch 1,8 --seq 128 --hardware h100-sxm --json bench.json
    """
    from portarun_conformance.hardware import profile_for

    from ..api import compile as compile_model
    from ..api import load, load_compiled
    from ..artifact import is_artifact
    from ..benchmark import benchmark_executable
    from ..cost import cost_per_million, hourly_cost, memory_roofline, weight_bytes
    from ..feeds import random_feeds

    batches = _batches(batch_text)
    assumptions = assumptions_from(price_per_hour, utilization, pue, kwh_price, lifetime_years, basis)
    if is_artifact(model_or_artifact):
        exe = load_compiled(model_or_artifact, target)
    else:
        if not target:
            click.echo("error: --target is required for a model (e.g. -t onnxruntime:cpu)", err=True)
            ctx.exit(EXIT_USAGE)
        exe = compile_model(load(model_or_artifact), target, precision, **parse_options(options))
    with exe:
        batch_axis = _axis(exe.inputs, ("batch", "batch_size", "N", "n"), 0) or "batch"
        seq_axis = _axis(exe.inputs, ("seq", "sequence", "sequence_length", "seq_len"), None)
        profile = profile_for(hardware, str(exe.target))
        hourly = hourly_cost(profile, assumptions)
        weights = weight_bytes(exe.model)
        rows = []
        defaults = _builtin_dims(model_or_artifact)
        signature = decoder_signature(exe)
        for batch in (batches if signature is not None else []):
            prompt_len = seq or defaults.get("seq", 16)
            gen = bench_decoder(exe, signature, batch, prompt_len, new_tokens, min(runs, 3))
            priced = cost_per_million(gen["decode_tokens_per_s"], hourly, "tokens")
            roof = None
            if profile is not None and profile.bandwidth_tbs.value:
                roof = memory_roofline(profile.bandwidth_tbs.value * 1e12, weights, gen["kv_bytes_per_token"],
                                       tokens_per_pass=batch, achieved_tokens_per_second=gen["decode_tokens_per_s"])
            rows.append({"batch": batch, "median_ms": gen["ttft_ms"], "p99_ms": gen["tpot_p99_ms"],
                         "per_second": gen["decode_tokens_per_s"], "unit": "tokens",
                         "usd_per_million": priced.usd_per_million,
                         "roofline_fraction": None if roof is None else roof.fraction, "decoder": gen,
                         "chosen": False})
        for batch in (batches if signature is None else []):
            sizes = {**defaults, **parse_dims(dims), batch_axis: batch}
            if seq_axis and seq:
                sizes[seq_axis] = seq
            feeds = random_feeds(exe.inputs, seed=0, dims=sizes)
            result = benchmark_executable(exe, feeds, warmup=warmup, runs=runs, batch_axis=batch_axis,
                                          tokens_axis=seq_axis, dims=sizes)
            per_second = result.tokens_per_second or result.items_per_second
            unit = "tokens" if result.tokens_per_second else "items"
            priced = cost_per_million(per_second, hourly, unit)
            roof = None
            if profile is not None and profile.bandwidth_tbs.value:
                roof = memory_roofline(profile.bandwidth_tbs.value * 1e12, weights,
                                       tokens_per_pass=result.tokens_per_run or result.items_per_run,
                                       achieved_tokens_per_second=per_second)
            rows.append({"batch": batch, "median_ms": result.median_ms, "p99_ms": result.p99_ms,
                         "per_second": per_second, "unit": unit, "usd_per_million": priced.usd_per_million,
                         "roofline_fraction": None if roof is None else roof.fraction,
                         "benchmark": result.to_dict(), "chosen": False})
        chosen = choose_batch(rows, max_latency_ms)
        if chosen is not None:
            chosen["chosen"] = True
        provenance = exe.provenance.to_dict()
    unit = rows[0]["unit"]
    if signature is not None:
        _print_decoder(exe, provenance, profile, hourly, rows, runs, new_tokens, max_latency_ms)
        _write_outputs(exe, provenance, hourly, max_latency_ms, weights, rows, json_path, plot_path)
        return
    click.echo(f"{exe.model.name} on {provenance['target']} at {provenance['precision']} "
               f"({provenance['device']}); {runs} runs after {warmup} warm-up; priced with "
               f"{profile.name if profile else 'no profile'}: {hourly.basis}"
               + (f", ${hourly.usd_per_hour:.4g}/h" if hourly.usd_per_hour is not None else f" ({hourly.note})"))
    table_rows = []
    for r in rows:
        b = r["benchmark"]
        energy = b["energy"]["joules_per_run"]
        table_rows.append([("* " if r["chosen"] else "  ") + str(r["batch"]), f"{r['median_ms']:.3f}",
                           f"{r['p99_ms']:.3f}", f"{b['items_per_second']:.4g}",
                           f"{b['tokens_per_second']:.4g}" if b["tokens_per_second"] else "-",
                           f"{b['peak_memory_bytes'] / 2**20:.0f}", f"{energy:.3g}" if energy is not None else "n/m",
                           f"${r['usd_per_million']:.4g}" if r["usd_per_million"] is not None else "-",
                           f"{r['roofline_fraction']:.2%}" if r["roofline_fraction"] is not None else "-"])
    click.echo(table(["batch", "median ms", "p99 ms", "items/s", "tokens/s", "peak MiB", "J/run",
                      f"$/1M {unit}", "of roofline"], table_rows))
    energy_note = rows[0]["benchmark"]["energy"]["note"]
    if rows[0]["benchmark"]["energy"]["sensor"] == "none":
        click.echo(f"energy: not measured ({energy_note})")
    if max_latency_ms is not None:
        click.echo(f"* batch {chosen['batch']}: lowest cost meeting {max_latency_ms:g} ms" if chosen else
                   f"no batch size meets {max_latency_ms:g} ms")
    elif chosen is not None:
        click.echo(f"* batch {chosen['batch']}: lowest cost (no latency limit given)")
    _write_outputs(exe, provenance, hourly, max_latency_ms, weights, rows, json_path, plot_path)


def _print_decoder(exe: Any, provenance: dict, profile: Any, hourly: Any, rows: list[dict], runs: int,
                   new_tokens: int, max_latency_ms: float | None) -> None:
    click.echo(f"{exe.model.name} on {provenance['target']} at {provenance['precision']}: greedy generation of "
               f"{new_tokens} tokens, median of {min(runs, 3)} runs; priced with "
               f"{profile.name if profile else 'no profile'}: {hourly.basis}")
    table_rows = [[("* " if r["chosen"] else "  ") + str(r["batch"]), f"{r['decoder']['ttft_ms']:.2f}",
                   f"{r['decoder']['tpot_median_ms']:.2f}", f"{r['decoder']['tpot_p99_ms']:.2f}",
                   f"{r['per_second']:.4g}",
                   f"${r['usd_per_million']:.4g}" if r["usd_per_million"] is not None else "-",
                   f"{r['roofline_fraction']:.2%}" if r["roofline_fraction"] is not None else "-"] for r in rows]
    click.echo(table(["batch", "TTFT ms", "TPOT ms", "TPOT p99 ms", "decode tok/s", "$/1M tokens",
                      "of roofline"], table_rows))
    chosen = next((r for r in rows if r["chosen"]), None)
    if max_latency_ms is not None:
        click.echo(f"* batch {chosen['batch']}: lowest cost with TTFT within {max_latency_ms:g} ms" if chosen else
                   f"no batch size has TTFT within {max_latency_ms:g} ms")


def _write_outputs(exe: Any, provenance: dict, hourly: Any, max_latency_ms: float | None, weights: int,
                   rows: list[dict], json_path: str | None, plot_path: str | None) -> None:
    if json_path:
        atomic_write_text(json_path, json.dumps({"model": exe.model.name, "provenance": provenance,
                                                 "hourly": hourly.to_dict(), "max_latency_ms": max_latency_ms,
                                                 "weight_bytes": weights, "rows": rows}, indent=1, default=str))
    if plot_path:
        from portarun_conformance.plot import plot_sweep

        plot_sweep(rows, plot_path, title=f"{exe.model.name} on {provenance['target']} {provenance['precision']}",
                   max_latency_ms=max_latency_ms)
