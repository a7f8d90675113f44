"""$/1M tokens of a built-in decoder per CPU backend x weight precision, from measured decode tokens/s.

A decoder at batch 1 is memory-bound: what a token costs is set by how fast the decode loop runs,
not by one encoder-style pass over a prompt (the matrix cells' throughput). So this section
quantizes the decoder once per precision (``int8-weight``, ``int4-weight``; cached where
``tools/bench_decode.py`` caches them), compiles it on every target, measures greedy decode
tokens/s side by side (``portarun.benchmark.measure_decode_side_by_side``, the same loop the
benchmark and ``portarun plan --from`` read) and prices each row:

    $/1M tokens = $/hour / (decode tokens/s x 3600) x 1e6

with $/hour from the target's hardware profile (CPU targets: this machine, priced at the sourced
cloud $/vCPU-hour of ``data/hardware.json`` times the cores used; its source and date are kept in
each row). Each row also says how far its greedy tokens and prefill logits stay from the same
backend's fp32: the accuracy ``portarun plan`` holds to its floor.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import portarun
from portarun import PortarunError, Precision
from portarun.benchmark import measure_decode_side_by_side
from portarun.cost import CostAssumptions, hourly_cost, usd_per_million_tokens, weight_bytes
from portarun.generate import forced_logits, next_token_agreement
from portarun.models.decoder import config_of, decode_step_bytes
from portarun.plugin import first_line

from .hardware import default_assumptions, profile_for

SECTION = "decode_cost"
DEFAULT_MODEL = "decoder-small"
DEFAULT_PRECISIONS = ("fp32", "int8-weight", "int4-weight")
CPU_TARGETS = ("onnxruntime:cpu", "openvino:cpu", "xla:cpu")
# the feed sizes tools/bench_decode.py quantizes with (its cache key is the same, so both share the files)
QUANTIZE_DIMS = {"batch": 1, "seq": 8, "past_seq": 0, "total_seq": 8}


@dataclass
class DecodeCostRow:
    target: str
    precision: str
    decode_tokens_per_s: float | None = None
    tpot_median_ms: float | None = None
    tpot_p99_ms: float | None = None
    ttft_ms: float | None = None
    cache: str | None = None
    tokens_equal_to_fp32: float | None = None  # greedy tokens equal to the same backend's fp32, position by position
    # teacher-forced on the same backend's fp32 sequence (prompt + its greedy tokens): the argmax equal to
    # fp32's at each new position (one flipped token no longer decides the rest), with its 95% interval
    next_token_agreement: float | None = None
    next_token_agreement_ci95: list[float] | None = None
    logits_cosine_to_fp32: float | None = None  # those teacher-forced logits, all positions, vs fp32's
    weight_bytes: int | None = None
    bytes_per_step: float | None = None  # read at least per decode step, as stored (4-bit = half a byte)
    usd_per_hour: float | None = None
    usd_per_million_tokens: float | None = None
    price_basis: str = ""
    price_source: str = ""
    price_date: str = ""
    hardware_profile: dict[str, Any] | None = None  # embedded so a plan elsewhere can re-price the row
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantizer_fingerprint() -> str:
    """A hash of the quantizer's own source: a cached quantized decoder is stale once the code that
    chose its layers changed (last session's cache held int8 files an older search had made)."""
    import hashlib

    from portarun import quantize

    digest = hashlib.sha256()
    for path in sorted(Path(quantize.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:8]


def quantized_decoder(name: str, precision: str, *, report: list | None = None) -> portarun.Model:
    """Built-in decoder ``name`` at ``precision``: the float model, or its quantized form, made once and
    cached under ``portarun.cache_dir()/bench_decode`` keyed by the float model's hash and the quantizer's
    source. ``report``, when given, gets the QuantizationReport of a fresh quantization (seconds included)."""
    base = portarun.models.build(name)
    if not Precision.parse(precision).is_quantized:
        return base
    cached = portarun.cache_dir() / "bench_decode" / f"{name}-{base.sha256[:12]}-q{quantizer_fingerprint()}-{precision}.onnx"
    if cached.exists():
        return portarun.load(cached)
    start = time.perf_counter()
    result = portarun.quantize(base, precision, dims=QUANTIZE_DIMS)
    if report is not None:
        report.append((precision, time.perf_counter() - start, result.report))
    result.model.save(cached)
    return result.model


def price_decode(row: DecodeCostRow, profile: Any, assumptions: CostAssumptions) -> DecodeCostRow:
    """Fill in $/hour (with its source and date) and $/1M tokens from the row's decode tokens/s."""
    hourly = hourly_cost(profile, assumptions)
    row.hardware_profile = profile.to_dict() if profile is not None else None
    row.usd_per_hour, row.price_basis = hourly.usd_per_hour, hourly.basis
    if profile is not None and hourly.basis == "cloud":
        row.price_source, row.price_date = profile.cloud_usd_per_hour.source, profile.cloud_usd_per_hour.date
    elif hourly.basis == "user price":
        row.price_source = "the user's --price-per-hour"
    else:
        row.price_source = hourly.note or hourly.basis
    if hourly.usd_per_hour is not None and row.decode_tokens_per_s:
        row.usd_per_million_tokens = usd_per_million_tokens(hourly.usd_per_hour, row.decode_tokens_per_s)
    return row


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b))


def measure_decode_costs(model: str = DEFAULT_MODEL, targets: Sequence[str] = CPU_TARGETS,
                         precisions: Sequence[str] = DEFAULT_PRECISIONS, *, hardware: str | None = None,
                         assumptions: CostAssumptions | None = None, prompt_tokens: int = 16, new_tokens: int = 32,
                         repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """The report's ``decode_cost`` section: one row per target x precision, measured side by side here."""
    assumptions = assumptions or default_assumptions()
    models = {}
    rows: dict[tuple[str, str], DecodeCostRow] = {}
    for precision in precisions:
        try:
            models[precision] = quantized_decoder(model, precision)
        except PortarunError as exc:
            for target in targets:
                rows[(target, precision)] = DecodeCostRow(target, precision, error=f"quantize: {first_line(exc)}")
    config = config_of(next(iter(models.values()))) if models else None
    vocab = (config or {}).get("vocab")
    prompt = np.random.default_rng(seed).integers(0, vocab or 100, size=(1, prompt_tokens)).astype(np.int64)
    executables = {}
    try:
        for target in targets:
            for precision, built in models.items():
                row = rows[(target, precision)] = DecodeCostRow(target, precision,
                                                                weight_bytes=weight_bytes(built))
                if config:  # the KV cache at the run's mean context length, as tools/bench_decode.py counts it
                    row.bytes_per_step = decode_step_bytes(built, config, prompt_tokens + new_tokens / 2)
                try:
                    exe = portarun.compile(built, target, precision)
                except PortarunError as exc:
                    row.error = first_line(exc)
                    continue
                executables[(target, precision)] = exe
                row.provenance = exe.provenance.to_dict()
                try:  # one prompt pass: a configuration that cannot run leaves the timed round robin
                    forced_logits(exe, prompt, cache="dynamic")
                except PortarunError as exc:
                    row.error = f"run: {first_line(exc)}"
                    executables.pop((target, precision)).close()
        speeds = _speeds(executables, rows, prompt, new_tokens, repeats)
        forced = _forced_on_fp32(executables, rows, speeds, prompt)
    finally:
        for exe in executables.values():
            exe.close()
    for (target, precision), row in rows.items():
        speed = speeds.get(f"{target} {precision}")
        if speed is not None:
            row.decode_tokens_per_s, row.tpot_median_ms, row.tpot_p99_ms = (speed.decode_tokens_per_s,
                                                                              speed.tpot_median_ms, speed.tpot_p99_ms)
            row.ttft_ms, row.cache = speed.ttft_ms, speed.cache
            base = speeds.get(f"{target} fp32")
            if base is not None:
                row.tokens_equal_to_fp32 = float(np.mean(np.asarray(speed.tokens) == np.asarray(base.tokens)))
            if (target, precision) in forced and (target, "fp32") in forced:
                ours, theirs = forced[(target, precision)], forced[(target, "fp32")]
                row.logits_cosine_to_fp32 = _cosine(ours, theirs)
                agreement = next_token_agreement(theirs[prompt.shape[1] - 1:-1], ours[prompt.shape[1] - 1:-1])
                row.next_token_agreement = agreement["next_token_agreement"]
                row.next_token_agreement_ci95 = agreement["next_token_agreement_ci95"]
        price_decode(row, profile_for(hardware, target), assumptions)
    return {"model": model, "batch": 1, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "repeats": repeats,
            "measured_by": "portarun.benchmark.measure_decode_side_by_side (round robin, greedy, medians)",
            "formula": "$/1M tokens = $/hour / (decode tokens/s x 3600) x 1e6",
            "load_average": list(os.getloadavg()), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": [row.to_dict() for row in rows.values()]}


def _forced_on_fp32(executables: dict, rows: dict, speeds: dict, prompt: np.ndarray) -> dict:
    """(target, precision) -> logits [positions, vocab] teacher-forced on that target's fp32 sequence (the
    prompt and fp32's greedy tokens); a configuration that fails here says so in its row."""
    out = {}
    for (target, precision), exe in executables.items():
        base = speeds.get(f"{target} fp32")
        if base is None or f"{target} {precision}" not in speeds:
            continue
        sequence = np.concatenate([prompt, np.asarray(base.tokens, dtype=prompt.dtype)], axis=1)  # [1, P + new]
        try:
            out[(target, precision)] = forced_logits(exe, sequence, cache="dynamic")[0]
        except PortarunError as exc:
            rows[(target, precision)].error = f"teacher-forced run: {first_line(exc)}"
    return out


def _speeds(executables: dict, rows: dict, prompt: np.ndarray, new_tokens: int, repeats: int) -> dict:
    """Decode speeds side by side; when one configuration fails to generate, the others alone and that one's
    row says why (one broken backend does not blank the table)."""
    named = {f"{t} {p}": e for (t, p), e in executables.items()}
    try:
        return measure_decode_side_by_side(named, prompt, new_tokens, repeats=repeats) if named else {}
    except PortarunError:
        speeds = {}
        for (target, precision), exe in executables.items():
            try:
                speeds[f"{target} {precision}"] = measure_decode_side_by_side({"one": exe}, prompt, new_tokens,
                                                                               repeats=repeats)["one"]
            except PortarunError as exc:
                rows[(target, precision)].error = f"generate: {first_line(exc)}"
        return speeds


def _agreement(row: dict[str, Any]) -> str:
    if row.get("next_token_agreement") is None:
        return "–"
    low, high = row["next_token_agreement_ci95"]
    return f"{row['next_token_agreement']:.2f} ({low:.2f}-{high:.2f})"


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def decode_cost_markdown(section: dict[str, Any]) -> list[str]:
    """The section as Markdown: a $/1M tokens table per target (rows) x precision (columns), then the rows."""
    rows = section["rows"]
    precisions = list(dict.fromkeys(r["precision"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    cell = {(r["target"], r["precision"]): r for r in rows}
    lines = [f"## $/1M tokens: {section['model']} decode (batch 1, {section['new_tokens']} new tokens after "
             f"{section['prompt_tokens']}, median of {section['repeats']}, load {section['load_average'][0]:.2f})", "",
             section["formula"] + "; decode tokens/s measured here, side by side.", "",
             "| target | " + " | ".join(f"{p} $/1M (tok/s)" for p in precisions) + " |",
             "|---|" + "---|" * len(precisions)]
    for target in targets:
        cells = []
        for precision in precisions:
            r = cell.get((target, precision))
            if r is None or r.get("error"):
                cells.append(f"error: {(r or {}).get('error', 'not run')[:60]}")
            else:
                cells.append(f"${_num(r['usd_per_million_tokens'], '.4g')} ({_num(r['decode_tokens_per_s'], '.1f')})")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    lines += ["", "| target | precision | decode tok/s | TPOT ms (p99) | MB/step | next token = fp32 (95% CI) | "
                  "tokens = fp32 | logits cosine | $/h |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['precision']} | {_num(r['decode_tokens_per_s'], '.1f')} | "
                     f"{_num(r['tpot_median_ms'], '.2f')} ({_num(r['tpot_p99_ms'], '.2f')}) | "
                     f"{_num(r['bytes_per_step'] and r['bytes_per_step'] / 1e6, '.1f')} | "
                     f"{_agreement(r)} | {_num(r['tokens_equal_to_fp32'], '.2f')} | {_num(r['logits_cosine_to_fp32'], '.5f')} | "
                     f"{_num(r['usd_per_hour'], '.4g')} |")
    sources = dict.fromkeys(f"{r['price_basis']}: {r['price_source']}" + (f" (dated {r['price_date']})"
                                                                           if r["price_date"] else "") for r in rows)
    lines += [""] + [f"- price: {text}" for text in sources]
    return lines


__all__ = ["DEFAULT_MODEL", "DEFAULT_PRECISIONS", "DecodeCostRow", "SECTION", "decode_cost_markdown",
           "measure_decode_costs", "price_decode", "quantized_decoder"]
