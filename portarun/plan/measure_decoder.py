"""Measure one compiled KV-cache decoder (portarun.generate): accuracy of its prefill logits and greedy
tokens against the reference, and TTFT / TPOT / tokens/s at one batch size with given prompt/output lengths."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..benchmark import measure_decode, peak_rss_bytes
from ..generate import DecoderSignature, generate, static_capacity
from .accuracy import accuracy_of, exact_match
from .candidates import Accuracy, Candidate
from .memory import kv_cache_bytes


CACHE_BUCKET = 16


def run_generate(exe: Any, ids: np.ndarray, new_tokens: int, capacity_for: int | None = None) -> Any:
    """Greedy generation with a static cache when the decoder can mask one: two shapes (prefill, decode)
    instead of one per token, so a backend that compiles per shape compiles twice, and every backend
    is timed on the same loop. ``capacity_for`` new tokens size the cache (a warm-up shorter than the
    timed run must see the same shapes)."""
    sig = DecoderSignature.of(exe)
    if not sig.has_attention_mask:
        return generate(exe, ids, new_tokens)
    capacity = static_capacity(ids.shape[1] + max(new_tokens, capacity_for or 0) - 1, CACHE_BUCKET)
    return generate(exe, ids, new_tokens, cache="static", capacity=capacity)


def prompts(sig: DecoderSignature, count: int, length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, sig.vocab or 100, size=(count, length)).astype(np.int64)


def prefill_feeds(sig: DecoderSignature, ids: np.ndarray) -> dict[str, np.ndarray]:
    """One prefill pass over ``ids`` with an empty cache: what the reference's logits are compared on."""
    batch, length = ids.shape
    empty = np.zeros((batch, sig.kv_shape[0], 0, sig.kv_shape[1]), dtype=sig.cache_dtype)
    feeds: dict[str, np.ndarray] = {"input_ids": ids, **{name: empty for name in sig.past}}
    if sig.has_position_ids:
        feeds["position_ids"] = np.broadcast_to(np.arange(length, dtype=np.int64), ids.shape).copy()
    if sig.has_attention_mask:
        feeds["attention_mask"] = np.ones((batch, length), dtype=np.int64)
    return feeds


def decoder_reference(exe: Any, ids: np.ndarray, output_tokens: int) -> dict[str, np.ndarray]:
    """What a candidate decoder is compared with: the reference's prefill logits and greedy tokens."""
    sig = DecoderSignature.of(exe)
    logits = exe.run(prefill_feeds(sig, ids))["logits"]
    return {"logits": logits, "tokens": run_generate(exe, ids, output_tokens).tokens}


def decoder_accuracy(exe: Any, ids: np.ndarray, reference: dict[str, np.ndarray], output_tokens: int,
                     labels: np.ndarray | None) -> Accuracy:
    """cosine / max_abs of the prefill logits; top1 = greedy tokens equal to the reference's (position by
    position); exact = greedy tokens equal to the labels' token ids."""
    sig = DecoderSignature.of(exe)
    logits = exe.run(prefill_feeds(sig, ids))["logits"]
    result = accuracy_of({"logits": logits}, {"logits": reference["logits"]}, samples=len(ids))
    tokens = run_generate(exe, ids, output_tokens).tokens
    result.top1 = float(np.mean(tokens == reference["tokens"]))
    if labels is not None:
        result.exact = exact_match(tokens, labels)
    return result


def measure_decoder(exe: Any, candidate: Candidate, *, prompt_tokens: int, output_tokens: int, reps: int,
                    seed: int = 0) -> Candidate:
    """TTFT (prefill), TPOT median/p99 (each later token) and decode tokens/s, measured by
    ``portarun.benchmark.measure_decode`` (the loop conformance's decode-cost table uses too, so a plan
    measured here and one read from that report price tokens the same way), plus the KV cache the batch
    needs at prompt + output length."""
    sig = DecoderSignature.of(exe)
    ids = prompts(sig, candidate.batch, prompt_tokens, seed)
    speed = measure_decode(exe, ids, max(2, output_tokens), repeats=max(1, reps), bucket=CACHE_BUCKET,
                           cache="static" if sig.has_attention_mask else "dynamic", warmup_tokens=2)
    candidate.ttft_ms, candidate.tpot_ms, candidate.tpot_p99_ms = speed.ttft_ms, speed.tpot_median_ms, speed.tpot_p99_ms
    candidate.prompt_tokens, candidate.output_tokens = prompt_tokens, output_tokens
    # decode tokens per second (steps after the first token x batch / their time): what a token of a
    # memory-bound decoder costs; the prefill is TTFT, and requests_per_s() adds it back
    candidate.tokens_per_s = speed.decode_tokens_per_s
    request_s = (speed.ttft_ms + (output_tokens - 1) * speed.tpot_median_ms) / 1e3
    candidate.items_per_s = candidate.batch / request_s if request_s > 0 else None
    candidate.unit = "tokens"
    candidate.kv_cache_bytes = kv_cache_bytes(layers_kv_tensors=len(sig.past), kv_heads=sig.kv_shape[0],
                                              head_dim=sig.kv_shape[1], itemsize=np.dtype(sig.cache_dtype).itemsize,
                                              batch=candidate.batch, length=prompt_tokens + output_tokens)
    candidate.peak_memory_bytes = peak_rss_bytes()
    candidate.notes.append(f"greedy generation of {output_tokens} tokens after {prompt_tokens}, median of "
                           f"{speed.repeats} runs (portarun.benchmark.measure_decode); tokens/s counts decode "
                           "steps after the first token")
    return candidate


__all__ = ["decoder_accuracy", "decoder_reference", "measure_decoder", "prefill_feeds", "prompts"]
