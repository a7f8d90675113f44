"""Decode tokens/s of a built-in decoder at batch 1 on each CPU backend and precision, side by side.

    python tools/bench_decode.py                       # decoder-small, fp32 + int8-weight + int4-weight
    python tools/bench_decode.py --model decoder-tiny --precisions fp32 --repeats 3
    python tools/bench_decode.py --json bench.json

Everything runs in one process and the configurations take turns (round robin), so
a noisy neighbour slows them all alike. Each configuration gets one warm-up
generation, then ``--repeats`` measured ones; the table shows medians over repeats
(TPOT median and p99 pooled over all steps, decode tokens/s), the ratio to the same
backend's fp32 and the fraction of greedy tokens equal to that fp32 run. The roofline
divides a NumPy copy's bandwidth (read + write bytes, at a footprint no smaller than the
step's bytes: this CPU's last-level cache may hold a small model) by the bytes one decode
step must read at least, counted as stored (``portarun.models.decoder.decode_step_bytes``:
4-bit weights as half a byte plus scales and zero points, one embedding row, the KV cache
at the run's mean context length); MBU is achieved / roofline. The load average is printed:
compare ratios within one run, not tokens/s across runs. XLA runs the static cache (fixed shapes, no
recompilation per token); the others the dynamic one unless ``--cache static``.
ONNX Runtime runs portarun's default (int4 weight-only MatMuls lowered to MatMulNBits with float
activations, int8 ones to MatMulInteger over the activations' 3 int8 digits); ``--variants`` adds
int8 activations (named: a different precision) on ORT and OpenVINO, and on ORT the int8 layers folded
to fp32 and ORT's own DQ fusion, side by side; the provenance in ``--json`` says which. ``next tok`` is next-token agreement with the same
backend's fp32, teacher-forced on fp32's greedy sequence (``portarun.generate.forced_logits``). ``$/1M tok`` prices our share of the cores of
``--hardware`` (conformance's hardware profiles). Quantized decoders are cached under ``portarun.cache_dir()/bench_decode``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import portarun  # noqa: E402
from portarun.cost import memory_roofline, usd_per_million_tokens  # noqa: E402
from portarun.errors import PortarunError  # noqa: E402
from portarun.registry import get_backend, resolve_target  # noqa: E402
from portarun.models import decoder  # noqa: E402
from portarun.models.decoder import decode_step_bytes  # noqa: E402
from portarun.benchmark import measure_decode_side_by_side  # noqa: E402
from portarun_conformance.decode_cost import quantized_decoder  # noqa: E402
from portarun_conformance.hardware import copy_bandwidth  # noqa: E402

CPU_TARGETS = ("onnxruntime:cpu", "openvino:cpu", "xla:cpu")
# --ort-exact: ORT computes the QDQ graph as written, in fp32 (no digits, no int8 activations)
ORT_EXACT = {"session_config": {"session.qdq_matmulnbits_accuracy_level": "0"}, "lower_int4": "matmulnbits",
             "lower_int8": "fold"}


def measure_bandwidth(megabytes: tuple[int, ...] = (32, 64, 128, 256, 512), repeats: int = 7) -> dict[str, float]:
    """Median bytes/s of NumPy copies (bytes read + bytes written, one thread per core) whose footprint
    (source + destination) is each of ``megabytes``. A decode step that reads 60 MB may be served from
    a large last-level cache (480 MiB on some Xeons), so its roofline must use the bandwidth at its own
    footprint, not the DRAM figure alone: otherwise an MBU above 1 says "cache", not "fast"."""
    return {f"{size} MB": statistics.median(copy_bandwidth(size, repeats=repeats)) for size in megabytes}


def _bandwidth_for(step_bytes: float, measured: dict[str, float]) -> float:
    """The best bandwidth measured at a footprint >= ``step_bytes`` (the largest footprint if none is):
    a smaller copy may sit in a cache the step's bytes do not fit in."""
    fitting = [bw for label, bw in measured.items() if float(label.split()[0]) * (1 << 20) >= step_bytes]
    return max(fitting) if fitting else measured[max(measured, key=lambda k: float(k.split()[0]))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="decoder-small")
    parser.add_argument("--targets", nargs="*", default=list(CPU_TARGETS))
    parser.add_argument("--precisions", nargs="*", default=["fp32", "int8-weight", "int4-weight"])
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", choices=["dynamic", "static"], default="dynamic",
                        help="cache mode for ORT and OpenVINO (XLA always static)")
    parser.add_argument("--ort-exact", action="store_true",
                        help="ORT int-weight MatMuls computed in fp32 (level 0, no digits, int8 folded)")
    parser.add_argument("--variants", "--ort-variants", dest="variants", action="store_true",
                        help="also run the weight-only precisions with int8-dynamic activations (ORT, OpenVINO), "
                             "and on ORT with the int8 layers folded and with ORT's own fusion")
    parser.add_argument("--hardware", default="local",
                        help="hardware profile that prices the $/1M tokens column (a share of its cores: ours); "
                             "'local' (default): this machine, measured, with the power of the matching CPU profile")
    parser.add_argument("--price-per-hour", type=float, help="explicit $/hour of the whole machine instead")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    # "a,b" as well as "a b"; a typo is a usage error, not a table of skipped rows (a backend whose SDK is
    # missing still skips, saying so)
    args.targets = [t for entry in args.targets for t in entry.split(",") if t]
    for text in args.targets:
        try:
            target = resolve_target(text)
            get_backend(target.backend).known_target(target)
        except PortarunError as exc:
            parser.error(str(exc))

    measured = measure_bandwidth()
    quantized: list = []
    built = {precision: quantized_decoder(args.model, precision, report=quantized) for precision in args.precisions}
    for precision, seconds, report in quantized:
        counts = ", ".join(f"{n} {level}" for level, n in report.counts().items())
        print(f"quantized {args.model} to {precision} in {seconds:.1f} s: {counts}; floor {report.floor} "
              f"{'met' if report.floor_met else 'NOT met'}", file=sys.stderr)
    config = decoder.config_of(next(iter(built.values())))
    prompt = np.random.default_rng(0).integers(0, config["vocab"], size=(1, args.prompt_tokens))
    context = args.prompt_tokens + args.new_tokens / 2

    runs = {}
    for target in args.targets:
        for precision, model in built.items():
            for variant, options in _variants(args, target, precision):
                try:
                    start = time.perf_counter()
                    exe = portarun.compile(model, target, precision, **options)
                except PortarunError as exc:
                    print(f"skip {target} {precision} {variant}: {exc}", file=sys.stderr)
                    continue
                runs[f"{target} {precision} {variant}"] = {"target": target, "precision": precision, "variant": variant,
                                                           "exe": exe, "compile_s": time.perf_counter() - start}
    # round robin, one warm-up each, one static capacity for XLA ("auto": static where a backend compiles per shape)
    speeds = measure_decode_side_by_side({k: r["exe"] for k, r in runs.items()}, prompt, args.new_tokens,
                                         repeats=args.repeats, cache="auto" if args.cache == "dynamic" else "static")
    for key, run in runs.items():
        run["speed"] = speeds[key]
    # measured again after the decode runs: a neighbour on a shared machine moves the copy bandwidth by up
    # to 2x within minutes (seen: 14.6 then 31 GB/s), and a roofline from a low reading puts runs "above"
    # it; the roofline takes the better of the two readings, both are printed
    before, after = measured, measure_bandwidth()
    measured = {label: max(before[label], after[label]) for label in before}
    forced = _forced_agreement(list(runs.values()), prompt)

    rows = []
    for run in runs.values():
        speed = run["speed"]
        row = {"target": run["target"], "precision": run["precision"], "variant": run["variant"], "cache": speed.cache,
               **{k: v for k, v in speed.to_dict().items() if k != "tokens"},
               "compile_s": run["compile_s"], "provenance": run["exe"].provenance.to_dict(),
               "tokens": speed.tokens[0], **forced.get(id(run), {})}
        per_step = decode_step_bytes(built[run["precision"]], config, context)
        bandwidth = _bandwidth_for(per_step, measured)
        roof = memory_roofline(bandwidth, per_step, achieved_tokens_per_second=row["decode_tokens_per_s"])
        row.update({"bytes_per_step": per_step, "bandwidth_bytes_per_s": bandwidth,
                    "roofline_tokens_per_s": roof.tokens_per_second, "mbu": roof.fraction, "mbu_note": roof.note})
        rows.append(row)
        run["exe"].close()

    fp32 = {r["target"]: r for r in rows if r["precision"] == "fp32" and not r["variant"]}
    print(f"\n{args.model}: {config}, batch 1, prompt {args.prompt_tokens}, {args.new_tokens} new tokens, "
          f"{args.repeats} repeats; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("copy bandwidth (NumPy copy, read + write; before / after the runs): " + ", ".join(
        f"{label} {before[label] / 1e9:.1f} / {after[label] / 1e9:.1f} GB/s" for label in measured)
        + "; each row's roofline uses the best copy bandwidth at or above its bytes per step")
    usd_per_hour, priced_as = _usd_per_hour(args)
    print(f"$/1M tokens: {priced_as}")
    header = f"{'target':<16} {'precision':<28} {'cache':<7} {'tok/s':>7} {'vs fp32':>7} {'same tok':>8} {'next tok':>8} " \
             f"{'TPOT med':>9} {'p99':>8} {'MB/step':>8} {'GB/s':>5} {'roofline':>8} {'MBU':>5} {'$/1M tok':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        base = fp32.get(r["target"])
        ratio = f"{r['decode_tokens_per_s'] / base['decode_tokens_per_s']:.2f}x" if base else "-"
        same = np.mean(np.asarray(r["tokens"]) == np.asarray(base["tokens"])) if base else float("nan")
        r.update({"vs_fp32": r["decode_tokens_per_s"] / base["decode_tokens_per_s"] if base else None,
                  "tokens_equal_to_fp32": float(same),
                  "usd_per_million_tokens": usd_per_million_tokens(usd_per_hour, r["decode_tokens_per_s"])
                  if usd_per_hour else None})
        label = r["precision"] + (f" ({r['variant']})" if r["variant"] else "")
        print(f"{r['target']:<16} {label:<28} {r['cache']:<7} {r['decode_tokens_per_s']:>7.1f} {ratio:>7} "
              f"{same:>8.2f} {r.get('next_token_agreement', float('nan')):>8.2f} "
              f"{r['tpot_median_ms']:>7.2f}ms {r['tpot_p99_ms']:>6.2f}ms "
              f"{r['bytes_per_step'] / 1e6:>8.1f} {r['bandwidth_bytes_per_s'] / 1e9:>5.1f} "
              f"{r['roofline_tokens_per_s']:>8.1f} {_mbu_text(r):>5} "
              f"{r['usd_per_million_tokens'] or float('nan'):>9.3f}")
    print("same tok: free-running greedy tokens equal to fp32's, position by position (one flip changes every "
          "later token); next tok: teacher-forced on fp32's sequence, the quantized argmax equal to fp32's at each "
          "of the new positions (95% Wilson interval in --json)")
    margins = [r["reference_top1_margin_median"] for r in rows if r.get("reference_top1_margin_median") is not None]
    if margins:
        print(f"fp32 top-1 minus top-2 logit, median over the new positions: {statistics.median(margins):.3f} "
              f"(logit std {statistics.median(r['reference_logit_std'] for r in rows if r.get('reference_logit_std')):.3f}): "
              "a small margin means near-ties that any rounding can flip")
    fp32_tokens = {t: r["tokens"] for t, r in fp32.items()}
    if len(fp32_tokens) > 1:
        same = len({json.dumps(t) for t in fp32_tokens.values()}) == 1
        print(f"fp32 greedy tokens identical across {', '.join(fp32_tokens)}: {same}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "config": config, "bandwidth_measured": measured,
                                         "bandwidth_before": before, "bandwidth_after": after,
                                         "load_average": os.getloadavg(), "rows": rows}, indent=2, default=str))
    return 0


def _mbu_text(row: dict) -> str:
    """MBU, or why there is none: 'above' the roofline (bytes came from caches, or the copy bandwidth was
    measured low under load), '-' where the step is not memory-bound."""
    if row["mbu"] is not None:
        return f"{row['mbu']:.2f}"
    return "above" if row["mbu_note"].startswith("above") else "-"


def _forced_agreement(runs: list[dict], prompt: np.ndarray) -> dict[int, dict]:
    """Per run (keyed by id): next-token agreement with the same target's fp32 run, teacher-forced on the
    fp32 run's greedy sequence (prompt + new tokens), with its 95% Wilson interval and fp32's top-1 margin."""
    from portarun.generate import forced_logits, next_token_agreement

    reference = {r["target"]: r for r in runs if r["precision"] == "fp32" and not r["variant"]}
    fp32_tokens = {t: np.asarray(r["speed"].tokens) for t, r in reference.items()}
    out: dict[int, dict] = {}
    logits_of: dict[int, np.ndarray] = {}
    for run in runs:
        base = reference.get(run["target"])
        if base is None:
            continue
        new = fp32_tokens[run["target"]]
        sequence = np.concatenate([prompt, new], axis=1)
        start = prompt.shape[1] - 1  # logits at position t predict token t + 1
        try:
            logits = forced_logits(run["exe"], sequence, cache=run["speed"].cache)[0, start:start + new.shape[1]]
        except PortarunError as exc:
            print(f"no next-token agreement for {run['target']} {run['precision']}: {exc}", file=sys.stderr)
            continue
        logits_of[id(run)] = logits
    for run in runs:
        base = reference.get(run["target"])
        if base is None or id(run) not in logits_of or id(base) not in logits_of:
            continue
        out[id(run)] = next_token_agreement(logits_of[id(base)], logits_of[id(run)])
    return out


# ONNX Runtime's weight-only forms side by side: the default (float activations, lowered), int8 activations
# (named, a different precision), the int4 MatMuls at fp32 compute (no digits) and the int8 ones folded to
# fp32, and what ORT did by itself before portarun lowered anything (its DQ fusion at its default accuracy
# level 4, whole embedding tables dequantized every step)
ORT_VARIANTS = {"int8-dynamic": {"activations": "int8-dynamic"},
                "int4 at fp32 compute": {"lower_int4": "matmulnbits"}, "int8 folded to fp32": {"lower_int8": "fold"},
                "ORT's own fusion": {"lower_int4": "none", "lower_int8": "none", "matmulnbits_accuracy_level": 4}}
VARIANT_PRECISIONS = {"int4 at fp32 compute": ("int4-weight",)}  # the others apply to both


OV_VARIANTS = {"int8-dynamic": {"activations": "int8-dynamic"}}  # OpenVINO's CPU default, group 32


def _variants(args, target: str, precision: str) -> list[tuple[str, dict]]:
    if target.startswith("onnxruntime") and args.ort_exact:
        return [("exact", ORT_EXACT)]
    variants = {"onnxruntime": ORT_VARIANTS, "openvino": OV_VARIANTS}.get(target.split(":")[0], {})
    if args.variants and precision in ("int8-weight", "int4-weight"):
        return [("", {})] + [(name, options) for name, options in variants.items()
                             if precision in VARIANT_PRECISIONS.get(name, (precision,))]
    return [("", {})]


def _usd_per_hour(args) -> tuple[float | None, str]:
    """$/hour of the cores this run used: the profile's machine $/hour times our share of its cores."""
    from portarun.cost import hourly_cost
    from portarun_conformance.hardware import default_assumptions, profile_for

    profile = profile_for(args.hardware, "onnxruntime:cpu")
    hourly = hourly_cost(profile, default_assumptions(price_per_hour_usd=args.price_per_hour))
    if hourly.usd_per_hour is None:
        return None, f"not priced ({hourly.note})"
    share = min(1.0, (os.cpu_count() or 1) / profile.cores) if profile.cores else 1.0
    return hourly.usd_per_hour * share, (f"{profile.name} at ${hourly.usd_per_hour:.3f}/h ({hourly.basis}) x "
                                         f"{share:.3f} of its cores = ${hourly.usd_per_hour * share:.4f}/h")


if __name__ == "__main__":
    raise SystemExit(main())
