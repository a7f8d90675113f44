"""The batch sweep ``portarun bench`` prints (and a plan command or a fleet driver calls): each batch size
measured (decoders by greedy generation: TTFT, TPOT, decode tokens/s), priced, placed on the memory
roofline, and the cheapest batch under a latency limit chosen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .timing import benchmark_executable


BATCH_AXES = ("batch", "batch_size", "N", "n")
SEQUENCE_AXES = ("seq", "sequence", "sequence_length", "seq_len")


def symbolic_axis(inputs: Any, candidates: tuple[str, ...], position: int | None) -> str | None:
    """The symbolic dim name used for the batch (first axis) or the sequence."""
    for spec in inputs:
        for axis, dim in enumerate(spec.shape or ()):
            if isinstance(dim, str) and (dim in candidates or (position is not None and axis == position)):
                return dim
    return None


def decoder_signature(exe: Any) -> Any | None:
    """The KV-cache layout when ``exe`` is a decoder (input_ids -> logits with past/present), else None."""
    from ..errors import PortarunError
    from ..generate import DecoderSignature

    try:
        return DecoderSignature.of(exe)
    except PortarunError:
        return None


def bench_decoder(exe: Any, sig: Any, batch: int, prompt_len: int, new_tokens: int, reps: int, *,
                  warmup: int = 1, seed: int = 0) -> dict[str, Any]:
    """Greedy generation: TTFT (prefill), TPOT (each later token), decode tokens/s; median of ``reps``
    after ``warmup`` untimed two-token generations (they compile both the prefill and the one-token shapes)."""
    from ..generate import generate

    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, sig.vocab or 100, size=(batch, prompt_len))
    for _ in range(warmup):
        generate(exe, prompt, 2)
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


@dataclass
class SweepConfig:
    """A batch sweep: which batch sizes, how the feeds are sized, how long to measure, the latency limit."""

    batches: list[int] = field(default_factory=lambda: [1])
    seq: int | None = None  # sequence length (prompt length for decoders; default dims["seq"] or 16)
    dims: dict[str, int] = field(default_factory=dict)  # sizes of other symbolic dims (built-in defaults first)
    runs: int = 20  # timed runs per batch (decoders: min(runs, 3) generations)
    warmup: int = 3  # untimed runs before timing
    max_latency_ms: float | None = None  # median latency limit (TTFT for decoders) for the chosen batch
    new_tokens: int = 32  # decoders: tokens generated per run
    seed: int = 0  # of the random feeds (prompt tokens for decoders)
    # the user's feeds (checked feed dicts, portarun.samples): the first one is measured at the batch
    # size it has, instead of random feeds per batch size; None: random feeds that respect the graph
    feeds: list[dict[str, Any]] | None = None


@dataclass
class SweepResult:
    """One row per batch size (plain dicts, as written to JSON) and the batch chosen under the limit."""

    model: str
    provenance: dict[str, Any]
    hourly: Any  # portarun.cost.HourlyCost
    profile: Any | None  # portarun.cost.HardwareProfile used for price and roofline
    config: SweepConfig
    weight_bytes: int
    rows: list[dict[str, Any]]
    decoder: bool = False

    @property
    def chosen(self) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["chosen"]), None)

    @property
    def unit(self) -> str:
        return self.rows[0]["unit"] if self.rows else "items"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "provenance": self.provenance, "hourly": self.hourly.to_dict(),
                "max_latency_ms": self.config.max_latency_ms, "weight_bytes": self.weight_bytes, "rows": self.rows}


def sweep(executable: Any, config: SweepConfig, *, profile: Any | None = None, assumptions: Any | None = None,
          progress: Callable[[dict[str, Any]], None] | None = None) -> SweepResult:
    """Measure ``executable`` at each batch size of ``config``; price each row with ``profile`` under
    ``assumptions`` (portarun.cost), add the memory-roofline fraction, and mark the cheapest batch that
    meets ``config.max_latency_ms``. Decoders are measured by greedy generation (TTFT/TPOT/decode tokens/s).
    ``progress`` gets each row as it is measured. The caller owns (and closes) ``executable``."""
    from ..cost import CostAssumptions, hourly_cost, weight_bytes

    hourly = hourly_cost(profile, assumptions or CostAssumptions())
    weights = weight_bytes(executable.model)
    signature = decoder_signature(executable)
    batches = config.batches
    if config.feeds:
        if signature is not None:
            from ..errors import UsageError

            raise UsageError("a decoder is measured by generating from a prompt, not from feeds",
                             hint="drop --inputs; use --seq for the prompt length")
        batch_axis = symbolic_axis(executable.inputs, BATCH_AXES, 0) or "batch"
        batches = [_bound_dims(executable.inputs, config.feeds[0]).get(batch_axis, 1)]
    rows = []
    for batch in batches:
        row = (_decoder_row(executable, signature, batch, config, profile, hourly, weights) if signature is not None
               else _feed_row(executable, batch, config, profile, hourly, weights))
        rows.append(row)
        if progress is not None:
            progress(row)
    chosen = choose_batch(rows, config.max_latency_ms)
    if chosen is not None:
        chosen["chosen"] = True
    return SweepResult(executable.model.name, executable.provenance.to_dict(), hourly, profile, config, weights,
                       rows, decoder=signature is not None)


def _roofline_fraction(profile: Any | None, weights: int, per_second: float, tokens_per_pass: int,
                       kv_bytes_per_token: float = 0.0) -> float | None:
    from ..cost import memory_roofline

    if profile is None or not profile.bandwidth_tbs.value:
        return None
    return memory_roofline(profile.bandwidth_tbs.value * 1e12, weights, kv_bytes_per_token,
                           tokens_per_pass=tokens_per_pass, achieved_tokens_per_second=per_second).fraction


def _decoder_row(exe: Any, signature: Any, batch: int, config: SweepConfig, profile: Any | None, hourly: Any,
                 weights: int) -> dict[str, Any]:
    from ..cost import cost_per_million

    prompt_len = config.seq or config.dims.get("seq", 16)
    gen = bench_decoder(exe, signature, batch, prompt_len, config.new_tokens, min(config.runs, 3),
                        warmup=config.warmup, seed=config.seed)
    priced = cost_per_million(gen["decode_tokens_per_s"], hourly, "tokens")
    return {"batch": batch, "median_ms": gen["ttft_ms"], "p99_ms": gen["tpot_p99_ms"],
            "per_second": gen["decode_tokens_per_s"], "unit": "tokens", "usd_per_million": priced.usd_per_million,
            "roofline_fraction": _roofline_fraction(profile, weights, gen["decode_tokens_per_s"], batch,
                                                    gen["kv_bytes_per_token"]),
            "decoder": gen, "chosen": False}


def _feed_row(exe: Any, batch: int, config: SweepConfig, profile: Any | None, hourly: Any,
              weights: int) -> dict[str, Any]:
    from ..cost import cost_per_million
    from ..feeds import random_feeds

    batch_axis = symbolic_axis(exe.inputs, BATCH_AXES, 0) or "batch"
    seq_axis = symbolic_axis(exe.inputs, SEQUENCE_AXES, None)
    if config.feeds:
        feeds = config.feeds[0]
        sizes = _bound_dims(exe.inputs, feeds)
    else:
        sizes = {**config.dims, batch_axis: batch}
        if seq_axis and config.seq:
            sizes[seq_axis] = config.seq
        feeds = random_feeds(exe, seed=config.seed, dims=sizes)
    result = benchmark_executable(exe, feeds, warmup=config.warmup, runs=config.runs, batch_axis=batch_axis,
                                  tokens_axis=seq_axis, dims=sizes)
    per_second = result.tokens_per_second or result.items_per_second
    unit = "tokens" if result.tokens_per_second else "items"
    priced = cost_per_million(per_second, hourly, unit)
    return {"batch": batch, "median_ms": result.median_ms, "p99_ms": result.p99_ms, "per_second": per_second,
            "unit": unit, "usd_per_million": priced.usd_per_million,
            "roofline_fraction": _roofline_fraction(profile, weights, per_second,
                                                    result.tokens_per_run or result.items_per_run),
            "benchmark": result.to_dict(), "chosen": False}


def _bound_dims(specs: Any, feeds: dict[str, Any]) -> dict[str, int]:
    """The sizes the user's arrays give the symbolic dims (for counting items and tokens)."""
    sizes: dict[str, int] = {}
    for spec in specs:
        array = feeds.get(spec.name)
        for axis, dim in enumerate(spec.shape or ()):
            if isinstance(dim, str) and array is not None and axis < np.ndim(array):
                sizes.setdefault(dim, int(np.shape(array)[axis]))
    return sizes


__all__ = ["BATCH_AXES", "SEQUENCE_AXES", "SweepConfig", "SweepResult", "bench_decoder", "choose_batch",
           "decoder_signature", "sweep", "symbolic_axis"]
