"""Greedy generation over any Executable of a KV-cache decoder: prefill, then one token per step.

The decoder contract (the built-in decoders follow it, and so do Hugging Face
decoders exported with ``portarun export --task text-generation``):

- inputs ``input_ids`` [batch, seq] int64, optionally ``position_ids`` [batch, seq] and
  ``attention_mask`` [batch, past + seq], and ``past_key_values.{i}.key|value``
  [batch, kv_heads, past, head_dim];
- outputs ``logits`` [batch, seq, vocab] and ``present.{i}.key|value`` = past + new entries.

Two cache modes:

- ``"dynamic"``: the cache grows by one entry per step (the presents are fed back as
  the next pasts). Every step has a new shape.
- ``"static"``: a preallocated cache of ``capacity`` slots (prompt + new tokens rounded
  up to a multiple of ``bucket``); empty slots are masked by ``attention_mask`` and the
  loop writes each step's new entry into its slot. Only two shapes ever run (prefill
  and decode), so a backend that compiles per shape (XLA) compiles twice, not per token.

Times are wall-clock around ``Executable.run`` plus the argmax: TTFT is the prefill
step (it yields the first token), TPOT each decode step after it.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ._callable import make_module_callable
from .backend import Executable
from .errors import InputError, UsageError

_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
CACHE_MODES = ("dynamic", "static")


@dataclass(frozen=True)
class DecoderSignature:
    """Where a decoder's cache lives in its inputs and outputs."""

    past: tuple[str, ...]  # past input names, in layer order (key, value, key, value, ...)
    present: tuple[str, ...]  # matching present output names
    kv_shape: tuple[int, int]  # (kv_heads, head_dim)
    cache_dtype: np.dtype
    has_position_ids: bool
    has_attention_mask: bool
    vocab: int | None

    @classmethod
    def of(cls, executable: Executable) -> "DecoderSignature":
        inputs = {spec.name: spec for spec in executable.inputs}
        outputs = {spec.name for spec in executable.outputs}
        name = executable.model.name
        if "input_ids" not in inputs or "logits" not in outputs:
            raise InputError(f"'{name}' is not a KV-cache decoder: it needs an input 'input_ids' and an output "
                             f"'logits' (it has inputs {', '.join(inputs)})",
                             hint="use a built-in decoder (decoder-tiny, decoder-small, decoder-1b) or export one "
                                  "with `portarun export --hf-path DIR --task text-generation`")
        pasts = sorted((int(m.group(1)), m.group(2) != "key", n) for n in inputs if (m := _PAST.match(n)))
        if not pasts:
            raise InputError(f"'{name}' has no KV cache inputs (past_key_values.N.key / .value)",
                             hint="generation needs a decoder exported with its cache as inputs and outputs")
        past = tuple(n for _, _, n in pasts)
        present = tuple(n.replace("past_key_values.", "present.", 1) for n in past)
        missing = [p for p in present if p not in outputs]
        if missing:
            raise InputError(f"'{name}' lacks cache outputs {', '.join(missing[:3])}",
                             hint="each past_key_values.N.key|value input needs a present.N.key|value output")
        spec = inputs[past[0]]
        if spec.shape is None or len(spec.shape) != 4 or not all(isinstance(d, int) for d in spec.shape[1::2]):
            raise InputError(f"'{name}': cache input '{past[0]}' must be [batch, kv_heads, past, head_dim] "
                             f"with fixed kv_heads and head_dim, got {spec.shape_text()}")
        logits = next(s for s in executable.outputs if s.name == "logits")
        vocab = logits.shape[-1] if logits.shape and isinstance(logits.shape[-1], int) else None
        return cls(past, present, (int(spec.shape[1]), int(spec.shape[3])), spec.dtype,
                   "position_ids" in inputs, "attention_mask" in inputs, vocab)


@dataclass
class GenerationResult:
    tokens: np.ndarray  # [batch, generated] int64 — the new tokens only
    prompt_tokens: int  # per sequence
    generated_tokens: int  # total over the batch, eos included, padding after eos excluded
    batch: int
    ttft_s: float
    step_s: list[float] = field(default_factory=list)  # each decode step after the first token
    cache: str = "dynamic"
    capacity: int | None = None  # static cache slots

    @property
    def decode_steps(self) -> int:
        return len(self.step_s)

    @property
    def tpot_median_s(self) -> float:
        return float(np.median(self.step_s)) if self.step_s else float("nan")

    @property
    def tpot_p99_s(self) -> float:
        return float(np.percentile(self.step_s, 99)) if self.step_s else float("nan")

    @property
    def decode_tokens_per_s(self) -> float:
        """Decode throughput over the batch (tokens after the first / decode time)."""
        total = float(np.sum(self.step_s))
        return self.batch * len(self.step_s) / total if total > 0 else float("nan")

    @property
    def total_s(self) -> float:
        return self.ttft_s + float(np.sum(self.step_s))

    def summary(self) -> dict[str, Any]:
        return {"batch": self.batch, "prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
                "decode_steps": self.decode_steps, "ttft_ms": self.ttft_s * 1e3,
                "tpot_median_ms": self.tpot_median_s * 1e3, "tpot_p99_ms": self.tpot_p99_s * 1e3,
                "decode_tokens_per_s": self.decode_tokens_per_s, "cache": self.cache, "capacity": self.capacity}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens"] = self.tokens.tolist()
        data.update(self.summary())
        return data


def static_capacity(needed: int, bucket: int) -> int:
    """Slots of a preallocated cache: ``needed`` rounded up to a multiple of ``bucket``."""
    if bucket <= 0:
        raise UsageError(f"cache bucket must be positive, got {bucket}")
    return -(-needed // bucket) * bucket


def _prompt_array(prompt_ids: Any) -> np.ndarray:
    prompt = np.asarray(prompt_ids)
    if prompt.ndim == 1:
        prompt = prompt[None, :]
    if prompt.ndim != 2 or prompt.shape[1] == 0 or prompt.dtype.kind not in "iu":
        raise InputError(f"prompt_ids must be integer token ids [batch, seq] with seq >= 1, "
                         f"got {prompt.dtype.name}{list(prompt.shape)}")
    return prompt.astype(np.int64)


def generate(executable: Executable, prompt_ids: Sequence[int] | np.ndarray, max_new_tokens: int = 128, *,
             cache: str = "dynamic", capacity: int | None = None, bucket: int = 128,
             eos_token_id: int | None = None) -> GenerationResult:
    """Greedy-decode ``max_new_tokens`` after ``prompt_ids`` ([seq] or [batch, seq]) with ``executable``.

    ``cache="static"`` preallocates ``capacity`` cache slots (default: prompt + new tokens
    rounded up to ``bucket``). With ``eos_token_id`` a sequence stops at it, and the loop stops
    when every sequence has; finished sequences are padded with eos and not counted.
    """
    if cache not in CACHE_MODES:
        raise UsageError(f"unknown cache mode '{cache}'", hint=f"choose one of {', '.join(CACHE_MODES)}")
    if max_new_tokens < 1:
        raise UsageError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    sig = DecoderSignature.of(executable)
    prompt = _prompt_array(prompt_ids)
    if sig.vocab is not None and (prompt.min() < 0 or prompt.max() >= sig.vocab):
        raise InputError(f"prompt token ids must be in [0, {sig.vocab}), got {prompt.min()}..{prompt.max()}")
    if cache == "static" and not sig.has_attention_mask:
        raise UsageError(f"'{executable.model.name}' has no attention_mask input, so a static cache cannot "
                         "mask its empty slots", hint="use cache='dynamic'")
    batch, prompt_len = prompt.shape
    needed = prompt_len + max_new_tokens
    if cache == "static":
        capacity = capacity if capacity is not None else static_capacity(needed - 1, bucket)
        if capacity < needed - 1:
            raise UsageError(f"static cache of {capacity} slots cannot hold {prompt_len} prompt + "
                             f"{max_new_tokens - 1} decoded tokens", hint=f"use capacity >= {needed - 1}")
        loop = _StaticCache(sig, batch, capacity)
    else:
        loop = _DynamicCache(sig, batch)

    tokens = np.zeros((batch, max_new_tokens), dtype=np.int64)
    finished = np.zeros(batch, dtype=bool)
    counted = 0
    steps: list[float] = []
    ids, positions = prompt, np.broadcast_to(np.arange(prompt_len, dtype=np.int64), prompt.shape)
    ttft = 0.0
    for step in range(max_new_tokens):
        start = time.perf_counter()
        outputs = executable.run(loop.feeds(ids, positions))
        next_ids = np.argmax(outputs["logits"][:, -1, :], axis=-1).astype(np.int64)
        elapsed = time.perf_counter() - start
        loop.update(outputs, ids.shape[1])
        if step == 0:
            ttft = elapsed
        else:
            steps.append(elapsed)
        if eos_token_id is not None:
            next_ids = np.where(finished, eos_token_id, next_ids)
        counted += int((~finished).sum())
        tokens[:, step] = next_ids
        if eos_token_id is not None:
            finished |= next_ids == eos_token_id
            if finished.all():
                tokens = tokens[:, :step + 1]
                break
        ids = next_ids[:, None]
        positions = np.full((batch, 1), prompt_len + step, dtype=np.int64)
    return GenerationResult(tokens=tokens, prompt_tokens=prompt_len, generated_tokens=counted, batch=batch,
                            ttft_s=ttft, step_s=steps, cache=cache,
                            capacity=capacity if cache == "static" else None)


class _DynamicCache:
    def __init__(self, sig: DecoderSignature, batch: int):
        self.sig = sig
        empty = np.zeros((batch, sig.kv_shape[0], 0, sig.kv_shape[1]), dtype=sig.cache_dtype)
        self.cache = {name: empty for name in sig.past}
        self.length = 0
        self.batch = batch

    def feeds(self, ids: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {"input_ids": ids, **self.cache}
        if self.sig.has_position_ids:
            feeds["position_ids"] = np.ascontiguousarray(positions)
        if self.sig.has_attention_mask:
            feeds["attention_mask"] = np.ones((self.batch, self.length + ids.shape[1]), dtype=np.int64)
        return feeds

    def update(self, outputs: dict[str, np.ndarray], new: int) -> None:
        self.cache = {past: outputs[present] for past, present in zip(self.sig.past, self.sig.present)}
        self.length += new


class _StaticCache:
    """``capacity`` preallocated slots; the graph sees them all as past, masked when empty."""

    def __init__(self, sig: DecoderSignature, batch: int, capacity: int):
        self.sig = sig
        shape = (batch, sig.kv_shape[0], capacity, sig.kv_shape[1])
        self.cache = {name: np.zeros(shape, dtype=sig.cache_dtype) for name in sig.past}
        self.capacity = capacity
        self.length = 0
        self.mask = np.zeros((batch, capacity), dtype=np.int64)

    def feeds(self, ids: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
        new = np.ones((ids.shape[0], ids.shape[1]), dtype=np.int64)
        feeds: dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": np.concatenate([self.mask, new], axis=1),
                                        **self.cache}
        if self.sig.has_position_ids:
            feeds["position_ids"] = np.ascontiguousarray(positions)
        return feeds

    def update(self, outputs: dict[str, np.ndarray], new: int) -> None:
        end = self.length + new
        if end > self.capacity:
            raise UsageError(f"static cache of {self.capacity} slots is full", hint="pass a larger capacity")
        for past, present in zip(self.sig.past, self.sig.present):
            # present = concat(all capacity slots, new entries): the new ones sit after the capacity
            self.cache[past][:, :, self.length:end] = outputs[present][:, :, self.capacity:self.capacity + new]
        self.mask[:, self.length:end] = 1
        self.length = end


make_module_callable(__name__, generate)  # portarun.generate(executable, ...) calls ``generate``
