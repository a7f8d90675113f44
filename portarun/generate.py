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

``"auto"`` (the default) picks static on backends that compile per input shape
(``Backend.compiles_per_shape``: XLA) and dynamic elsewhere.

Decoders whose names differ (another exporter's) are mapped with ``names`` (``DecoderNames``)
instead of edited; a merged decoder's ``use_cache_branch`` input is fed False on a prefill
without a past and True after. Tokens are greedy by default, or sampled with ``temperature``,
``top_k``, ``top_p`` and ``seed``.

Times are wall-clock around ``Executable.run`` plus the token choice: TTFT is the prefill
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

CACHE_MODES = ("auto", "dynamic", "static")


@dataclass(frozen=True)
class DecoderNames:
    """The names a decoder uses for the generation contract; ``{i}`` is the layer, ``{kind}`` key/value."""

    input_ids: str = "input_ids"
    attention_mask: str = "attention_mask"
    position_ids: str = "position_ids"
    logits: str = "logits"
    past: str = "past_key_values.{i}.{kind}"
    present: str = "present.{i}.{kind}"
    use_cache_branch: str = "use_cache_branch"

    @classmethod
    def parse(cls, pairs: "DecoderNames | dict[str, str] | Sequence[str] | None") -> "DecoderNames":
        """From a DecoderNames, a dict, or ``KEY=NAME`` strings (``past=past.{i}.{kind}``)."""
        if pairs is None or isinstance(pairs, DecoderNames):
            return pairs or cls()
        items = dict(pairs) if isinstance(pairs, dict) else dict(_split_pair(p) for p in pairs)
        known = set(cls.__dataclass_fields__)
        unknown = [k for k in items if k not in known]
        if unknown:
            raise UsageError(f"unknown decoder name key(s) {', '.join(unknown)}", hint=f"keys: {', '.join(sorted(known))}")
        for key in ("past", "present"):
            if key in items and "{i}" not in items[key]:
                raise UsageError(f"the {key} name pattern must contain {{i}} (the layer), got '{items[key]}'",
                                 hint="e.g. past=past.{i}.{kind} (kind is key or value)")
        return cls(**items)

    def pattern(self, which: str) -> re.Pattern:
        text = re.escape(getattr(self, which)).replace(re.escape("{i}"), r"(?P<i>\d+)")
        text = text.replace(re.escape("{kind}"), r"(?P<kind>key|value)")
        return re.compile(f"^{text}$")


def _split_pair(text: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    if not sep or not key or not value:
        raise UsageError(f"expected KEY=NAME, got '{text}'", hint="e.g. --names logits=lm_logits")
    return key.strip(), value.strip()


@dataclass(frozen=True)
class DecoderSignature:
    """Where a decoder's tokens, masks and cache live in its inputs and outputs (actual names)."""

    past: tuple[str, ...]  # past input names, in layer order (key, value, key, value, ...)
    present: tuple[str, ...]  # matching present output names
    kv_shape: tuple[int, int]  # (kv_heads, head_dim)
    cache_dtype: np.dtype
    has_position_ids: bool
    has_attention_mask: bool
    vocab: int | None
    input_ids: str = "input_ids"
    logits: str = "logits"
    position_ids: str = "position_ids"
    attention_mask: str = "attention_mask"
    use_cache_branch: str | None = None  # merged decoders (optimum): which branch runs

    @classmethod
    def of(cls, executable: Executable, names: "DecoderNames | dict | Sequence[str] | None" = None) -> "DecoderSignature":
        names = DecoderNames.parse(names)
        inputs = {spec.name: spec for spec in executable.inputs}
        outputs = {spec.name for spec in executable.outputs}
        name = executable.model.name
        if names.input_ids not in inputs or names.logits not in outputs:
            raise InputError(f"'{name}' is not a KV-cache decoder: it needs an input '{names.input_ids}' and an "
                             f"output '{names.logits}' (it has inputs {', '.join(inputs)}; outputs "
                             f"{', '.join(sorted(outputs))})",
                             hint="map other names with --names input_ids=NAME logits=NAME past=PATTERN present=PATTERN,"
                                  " or export one with `portarun export --hf-path DIR --task text-generation`")
        past_re = names.pattern("past")
        pasts = sorted((int(m.group("i")), (m.groupdict().get("kind") or "key") != "key", n)
                       for n in inputs if (m := past_re.match(n)))
        if not pasts:
            raise InputError(f"'{name}' has no KV cache inputs named like '{names.past}'",
                             hint="generation needs the cache as inputs and outputs; map other names with "
                                  "--names past=PATTERN present=PATTERN ({i} = layer, {kind} = key|value)")
        past = tuple(n for _, _, n in pasts)
        present = tuple(names.present.format(i=i, kind="value" if is_value else "key") for i, is_value, _ in pasts)
        missing = [p for p in present if p not in outputs]
        if missing:
            raise InputError(f"'{name}' lacks cache outputs {', '.join(missing[:3])}",
                             hint=f"each {names.past} input needs a {names.present} output (map with --names present=...)")
        spec = inputs[past[0]]
        if spec.shape is None or len(spec.shape) != 4 or not all(isinstance(d, int) for d in spec.shape[1::2]):
            raise InputError(f"'{name}': cache input '{past[0]}' must be [batch, kv_heads, past, head_dim] "
                             f"with fixed kv_heads and head_dim, got {spec.shape_text()}")
        logits = next(s for s in executable.outputs if s.name == names.logits)
        vocab = logits.shape[-1] if logits.shape and isinstance(logits.shape[-1], int) else None
        return cls(past, present, (int(spec.shape[1]), int(spec.shape[3])), spec.dtype,
                   names.position_ids in inputs, names.attention_mask in inputs, vocab,
                   input_ids=names.input_ids, logits=names.logits, position_ids=names.position_ids,
                   attention_mask=names.attention_mask,
                   use_cache_branch=names.use_cache_branch if names.use_cache_branch in inputs else None)


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


def resolve_cache(executable: Executable, cache: str, sig: DecoderSignature) -> str:
    """``auto``: static where the backend compiles per input shape (and a mask can hide empty slots)."""
    if cache not in CACHE_MODES:
        raise UsageError(f"unknown cache mode '{cache}'", hint=f"choose one of {', '.join(CACHE_MODES)}")
    if cache != "auto":
        return cache
    per_shape = bool(getattr(executable.backend, "compiles_per_shape", False))
    return "static" if per_shape and sig.has_attention_mask else "dynamic"


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy (temperature 0), else sampled from the top-k / top-p
    (nucleus) of the softmax at ``temperature``, seeded."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UsageError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def choose(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The next token per row of ``logits`` [batch, vocab]."""
        if self.greedy:
            return np.argmax(logits, axis=-1).astype(np.int64)
        scores = logits.astype(np.float64) / self.temperature
        if self.top_k is not None and self.top_k < scores.shape[-1]:
            kth = np.partition(scores, -self.top_k, axis=-1)[:, -self.top_k][:, None]
            scores = np.where(scores < kth, -np.inf, scores)
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        if self.top_p is not None and self.top_p < 1:
            order = np.argsort(-probs, axis=-1)
            ranked = np.take_along_axis(probs, order, axis=-1)
            keep_ranked = np.cumsum(ranked, axis=-1) - ranked < self.top_p  # the smallest set reaching top_p
            keep = np.zeros_like(keep_ranked)
            np.put_along_axis(keep, order, keep_ranked, axis=-1)
            probs = np.where(keep, probs, 0.0)
            probs /= probs.sum(axis=-1, keepdims=True)
        return np.array([rng.choice(probs.shape[-1], p=row) for row in probs], dtype=np.int64)


def generate(executable: Executable, prompt_ids: Sequence[int] | np.ndarray, max_new_tokens: int = 128, *,
             cache: str = "auto", capacity: int | None = None, bucket: int = 128,
             eos_token_id: int | Sequence[int] | None = None, sampling: Sampling | None = None,
             names: "DecoderNames | dict | Sequence[str] | None" = None) -> GenerationResult:
    """Decode ``max_new_tokens`` after ``prompt_ids`` ([seq] or [batch, seq]) with ``executable``.

    ``cache="static"`` preallocates ``capacity`` cache slots (default: prompt + new tokens
    rounded up to ``bucket``); ``"auto"`` picks per backend (see ``resolve_cache``). With
    ``eos_token_id`` (one id or several) a sequence stops at it, and the loop stops when every
    sequence has; finished sequences are padded with eos and not counted. ``sampling`` chooses
    tokens (greedy by default); ``names`` maps a decoder whose input/output names differ.
    """
    if cache not in CACHE_MODES:
        raise UsageError(f"unknown cache mode '{cache}'", hint=f"choose one of {', '.join(CACHE_MODES)}")
    if max_new_tokens < 1:
        raise UsageError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    sig = DecoderSignature.of(executable, names)
    cache = resolve_cache(executable, cache, sig)
    sampling = sampling or Sampling()
    rng = np.random.default_rng(sampling.seed)
    stops = None if eos_token_id is None else np.array(
        [eos_token_id] if np.ndim(eos_token_id) == 0 else list(eos_token_id), dtype=np.int64)
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
        # the first step's feeds are checked against the signature; later ones are built alike (only the
        # sequence dims grow), and checking 19 feeds cost ~0.1 ms of a 4 ms step
        outputs = executable.run(loop.feeds(ids, positions), check=step == 0, tails=loop.tails(ids.shape[1]))
        next_ids = sampling.choose(outputs[sig.logits][:, -1, :], rng)
        elapsed = time.perf_counter() - start
        loop.update(outputs, ids.shape[1])
        if step == 0:
            ttft = elapsed
        else:
            steps.append(elapsed)
        if stops is not None:
            next_ids = np.where(finished, stops[0], next_ids)
        counted += int((~finished).sum())
        tokens[:, step] = next_ids
        if stops is not None:
            finished |= np.isin(next_ids, stops)
            if finished.all():
                tokens = tokens[:, :step + 1]
                break
        ids = next_ids[:, None]
        positions = np.full((batch, 1), prompt_len + step, dtype=np.int64)
    return GenerationResult(tokens=tokens, prompt_tokens=prompt_len, generated_tokens=counted, batch=batch,
                            ttft_s=ttft, step_s=steps, cache=cache,
                            capacity=capacity if cache == "static" else None)


def forced_logits(executable: Executable, token_ids: Sequence[int] | np.ndarray, *, cache: str = "auto",
                  bucket: int = 128, names: "DecoderNames | dict | Sequence[str] | None" = None) -> np.ndarray:
    """Logits [batch, seq, vocab] of one forward pass over ``token_ids`` from an empty cache (teacher forcing).

    Position t holds the model's prediction for token t + 1 given tokens 0..t, so two executables
    compared on the same sequence (say fp32's greedy output) give next-token agreement position by
    position, unlike free-running generation, where one flipped token changes every later one.
    """
    if cache not in CACHE_MODES:
        raise UsageError(f"unknown cache mode '{cache}'", hint=f"choose one of {', '.join(CACHE_MODES)}")
    sig = DecoderSignature.of(executable, names)
    cache = resolve_cache(executable, cache, sig)
    ids = _prompt_array(token_ids)
    if sig.vocab is not None and (ids.min() < 0 or ids.max() >= sig.vocab):
        raise InputError(f"token ids must be in [0, {sig.vocab}), got {ids.min()}..{ids.max()}")
    batch, length = ids.shape
    loop = _StaticCache(sig, batch, static_capacity(length, bucket)) if cache == "static" and sig.has_attention_mask \
        else _DynamicCache(sig, batch)
    positions = np.broadcast_to(np.arange(length, dtype=np.int64), ids.shape)
    # every logit, and no present: their tails start past the end, so XLA computes none of them
    nothing = {present: (2, (loop.capacity if isinstance(loop, _StaticCache) else 0) + length)
               for present in sig.present}
    return executable.run(loop.feeds(ids, positions), tails=nothing)[sig.logits]


def next_token_agreement(reference: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """Teacher-forced next-token agreement of ``logits`` with ``reference``, both [positions, vocab] from
    ``forced_logits`` on the same sequence: the share of positions whose argmax is the same, its 95% Wilson
    interval, and the reference's median top-1 minus top-2 margin and logit spread (a small margin means
    near-ties that any rounding flips)."""
    from .quantize.accuracy import wilson_interval

    reference, logits = np.asarray(reference), np.asarray(logits)
    if reference.shape != logits.shape or reference.ndim != 2 or not reference.shape[0]:
        raise UsageError(f"next-token agreement needs two [positions, vocab] logits of one shape, got "
                         f"{reference.shape} and {logits.shape}", hint="run forced_logits on the same sequence")
    agree = int(np.sum(np.argmax(reference, -1) == np.argmax(logits, -1)))
    top2 = np.sort(reference, axis=-1)[:, -2:]
    return {"next_token_agreement": agree / reference.shape[0],
            "next_token_agreement_ci95": list(wilson_interval(agree, reference.shape[0])),
            "reference_top1_margin_median": float(np.median(top2[:, 1] - top2[:, 0])),
            "reference_logit_std": float(np.std(reference))}


def _common_feeds(sig: DecoderSignature, ids: np.ndarray, positions: np.ndarray, has_past: bool) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {sig.input_ids: ids}
    if sig.has_position_ids:
        feeds[sig.position_ids] = np.ascontiguousarray(positions)
    if sig.use_cache_branch is not None:
        feeds[sig.use_cache_branch] = np.array([has_past], dtype=bool)
    return feeds


def _last_logits(sig: DecoderSignature, seq: int) -> dict[str, tuple[int, int]]:
    # the loop reads only the last position's logits ([batch, seq, vocab])
    return {sig.logits: (1, seq - 1)}


class _DynamicCache:
    def __init__(self, sig: DecoderSignature, batch: int):
        self.sig = sig
        empty = np.zeros((batch, sig.kv_shape[0], 0, sig.kv_shape[1]), dtype=sig.cache_dtype)
        self.cache = {name: empty for name in sig.past}
        self.length = 0
        self.batch = batch

    def feeds(self, ids: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {**_common_feeds(self.sig, ids, positions, self.length > 0), **self.cache}
        if self.sig.has_attention_mask:
            feeds[self.sig.attention_mask] = np.ones((self.batch, self.length + ids.shape[1]), dtype=np.int64)
        return feeds

    def tails(self, seq: int) -> dict[str, tuple[int, int]]:
        return _last_logits(self.sig, seq)  # the presents are the next pasts, whole

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
        feeds = {**_common_feeds(self.sig, ids, positions, True), **self.cache}  # the slots are always a past
        feeds[self.sig.attention_mask] = np.concatenate([self.mask, new], axis=1)
        return feeds

    def tails(self, seq: int) -> dict[str, tuple[int, int]]:
        # present = concat(all capacity slots, new entries): only the new ones, after the capacity, are
        # kept, so the run returns just those (XLA then never writes the capacity slots back out)
        return {**_last_logits(self.sig, seq), **{present: (2, self.capacity) for present in self.sig.present}}

    def update(self, outputs: dict[str, np.ndarray], new: int) -> None:
        end = self.length + new
        if end > self.capacity:
            raise UsageError(f"static cache of {self.capacity} slots is full", hint="pass a larger capacity")
        for past, present in zip(self.sig.past, self.sig.present):
            self.cache[past][:, :, self.length:end] = outputs[present][:, :, :new]  # the tail from tails()
        self.mask[:, self.length:end] = 1
        self.length = end


make_module_callable(__name__, generate)  # portarun.generate(executable, ...) calls ``generate``
