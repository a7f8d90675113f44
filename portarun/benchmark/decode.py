"""Decode speed of compiled decoders at one batch, several side by side (round robin), the figure
conformance's $/1M tokens table and ``portarun plan`` read."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from .timing import percentile


@dataclass
class DecodeSpeed:
    """Decode speed of one compiled decoder at one batch: tokens/s counts the tokens after the first
    (decode steps x batch / decode time, prefill excluded), the number a $/1M tokens of a memory-bound
    decoder is about. Medians over ``repeats`` generations after a warm-up; TPOT pooled over all steps."""

    decode_tokens_per_s: float
    tpot_median_ms: float
    tpot_p99_ms: float
    ttft_ms: float
    batch: int
    prompt_tokens: int
    new_tokens: int
    repeats: int
    cache: str
    capacity: int | None
    tokens: list[list[int]]  # greedy tokens of the first timed repeat
    same_tokens_every_repeat: bool
    tokens_per_s_each_repeat: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_decode(executable: Any, prompt_ids: Any, new_tokens: int = 32, *, repeats: int = 3,
                   cache: str = "auto", bucket: int = 128, warmup_tokens: int = 4) -> DecodeSpeed:
    """Decode tokens/s of one compiled decoder (``measure_decode_side_by_side`` with one entry)."""
    return measure_decode_side_by_side({"only": executable}, prompt_ids, new_tokens, repeats=repeats, cache=cache,
                                       bucket=bucket, warmup_tokens=warmup_tokens)["only"]


def measure_decode_side_by_side(executables: Mapping[str, Any], prompt_ids: Any, new_tokens: int = 32, *,
                                repeats: int = 3, cache: str = "auto", bucket: int = 128,
                                warmup_tokens: int = 4) -> dict[str, DecodeSpeed]:
    """Greedy decode tokens/s of several compiled decoders on one prompt, taking turns (round robin:
    each one generation per round), so a noisy neighbour slows them all alike.

    Each gets one warm-up generation of ``warmup_tokens`` at the shapes of the timed ones (a static
    cache keeps one capacity, ``prompt + new_tokens - 1`` rounded up to ``bucket``: no backend compiles
    again while timed). ``cache="auto"`` is static where a backend compiles per shape (XLA), else dynamic.
    """
    from ..errors import UsageError
    from ..generate import DecoderSignature, generate, resolve_cache, static_capacity

    if repeats < 1 or new_tokens < 2:
        raise UsageError(f"decode speed needs repeats >= 1 and new_tokens >= 2, got {repeats} and {new_tokens}",
                         hint="decode steps are the tokens after the first; ask for at least 2 new tokens")
    prompt = np.asarray(prompt_ids)
    prompt = prompt[None, :] if prompt.ndim == 1 else prompt
    plans = {}
    for name, exe in executables.items():
        mode = resolve_cache(exe, cache, DecoderSignature.of(exe))
        capacity = static_capacity(prompt.shape[1] + new_tokens - 1, bucket) if mode == "static" else None
        generate(exe, prompt, max(2, min(warmup_tokens, new_tokens)), cache=mode, capacity=capacity)
        plans[name] = (exe, mode, capacity, [])
    for _ in range(repeats):
        for exe, mode, capacity, results in plans.values():
            results.append(generate(exe, prompt, new_tokens, cache=mode, capacity=capacity))
    speeds = {}
    for name, (exe, mode, capacity, results) in plans.items():
        steps = [s for r in results for s in r.step_s]
        speeds[name] = DecodeSpeed(
            decode_tokens_per_s=statistics.median(r.decode_tokens_per_s for r in results),
            tpot_median_ms=1e3 * statistics.median(steps), tpot_p99_ms=1e3 * percentile(steps, 99),
            ttft_ms=1e3 * statistics.median(r.ttft_s for r in results), batch=int(prompt.shape[0]),
            prompt_tokens=int(prompt.shape[1]), new_tokens=new_tokens, repeats=repeats, cache=mode, capacity=capacity,
            tokens=results[0].tokens.tolist(),
            same_tokens_every_repeat=all(np.array_equal(r.tokens, results[0].tokens) for r in results),
            tokens_per_s_each_repeat=[r.decode_tokens_per_s for r in results])
    return speeds


__all__ = ["DecodeSpeed", "measure_decode", "measure_decode_side_by_side"]
