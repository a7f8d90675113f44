"""Decode tokens/s of a built-in decoder at batch 1 on each CPU backend and precision, side by side.

    python tools/bench_decode.py                       # decoder-small, fp32 + int8-weight + int4-weight
    python tools/bench_decode.py --model decoder-tiny --precisions fp32 --repeats 3
    python tools/bench_decode.py --json bench.json

Everything runs in one process and the configurations take turns (round robin), so
a noisy neighbour slows them all alike. Each configuration gets one warm-up
generation, then ``--repeats`` measured ones; the table shows medians over repeats
(TTFT, TPOT median and p99 pooled over all steps, decode tokens/s) and the ratio to
onnxruntime:cpu fp32. The roofline line is this machine's memory bandwidth, measured
with a NumPy copy (read + write bytes), divided by the bytes one decode step must read
at least: every weight except the embedding table (one row of it), plus the KV cache
at the run's mean context length. XLA runs the static cache (fixed shapes, no
recompilation per token); the others the dynamic one unless ``--cache static``.
ONNX Runtime runs its default session (its fused int-weight MatMuls quantize
activations to int8) unless ``--ort-exact``; the provenance in ``--json`` says which.
Quantized decoders are cached under ``portarun.cache_dir()/bench_decode``.
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
from portarun import models  # noqa: E402
from portarun.cost import memory_roofline  # noqa: E402
from portarun.errors import PortarunError  # noqa: E402
from portarun.models import decoder  # noqa: E402

CPU_TARGETS = ("onnxruntime:cpu", "openvino:cpu", "xla:cpu")
# --ort-exact: ORT computes the QDQ graph as written (no int8 activations in its fused int-weight MatMuls)
ORT_EXACT = {"session_config": {"session.qdq_matmulnbits_accuracy_level": "0"}}


def measure_bandwidth(megabytes: int = 512, repeats: int = 7) -> dict[str, float]:
    """Bytes/s of a large NumPy copy (bytes read + bytes written), on one thread and on one thread per
    core (NumPy releases the GIL while copying): one core alone rarely saturates the memory bus."""
    from concurrent.futures import ThreadPoolExecutor

    src = np.ones(megabytes * (1 << 20) // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages first
    threads = os.cpu_count() or 1
    chunks = [(d, s) for d, s in zip(np.array_split(dst, threads), np.array_split(src, threads))]
    result = {}
    with ThreadPoolExecutor(threads) as pool:
        for label, copy in (("one_thread", lambda: np.copyto(dst, src)),
                            ("all_threads", lambda: list(pool.map(lambda c: np.copyto(*c), chunks)))):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                copy()
                times.append(time.perf_counter() - start)
            result[label] = 2 * src.nbytes / statistics.median(times)
    return result


def bytes_per_decode_step(model: portarun.Model, config: dict, context: float) -> float:
    """Initializer bytes a decode step must read (embedding table: one row) + KV cache bytes at ``context``."""
    graph = model.proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    embedding = set()
    for node in graph.node:
        if node.op_type == "Gather":
            source = node.input[0]
            while source in producers and producers[source].op_type == "DequantizeLinear":
                embedding.update(producers[source].input)
                source = producers[source].input[0]
            embedding.add(source)
    from onnx import numpy_helper

    total = 0
    for tensor in graph.initializer:
        if tensor.name in embedding:
            continue
        try:
            total += numpy_helper.to_array(tensor).nbytes
        except Exception:  # packed int4: the payload is what is read
            total += len(tensor.raw_data)
    total += config["hidden"] * 4  # the one embedding row
    kv = 2 * config["layers"] * config["kv_heads"] * config["head_dim"] * 4 * context
    return total + kv


def build_models(name: str, precisions: list[str]) -> dict[str, portarun.Model]:
    """The float decoder and its quantized forms; quantized ones are cached (keyed by the float model's hash)."""
    base = models.build(name)
    built = {}
    for precision in precisions:
        if precision in ("int8-weight", "int4-weight"):
            try:
                from portarun import quantize
            except ImportError:
                print(f"skip {precision}: portarun.quantize is not available", file=sys.stderr)
                continue
            cached = portarun.cache_dir() / "bench_decode" / f"{name}-{base.sha256[:12]}-{precision}.onnx"
            if cached.exists():
                built[precision] = portarun.load(cached)
                continue
            start = time.perf_counter()
            built[precision] = quantize(base, precision, dims={"batch": 1, "seq": 8, "past_seq": 0,
                                                               "total_seq": 8}).model
            built[precision].save(cached)
            print(f"quantized {name} to {precision} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        else:
            built[precision] = base
    return built


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
                        help="ORT int-weight MatMuls without int8 activations (accuracy level 0)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    measured = measure_bandwidth()
    bandwidth = max(measured.values())
    built = build_models(args.model, args.precisions)
    config = decoder.config_of(next(iter(built.values())))
    prompt = np.random.default_rng(0).integers(0, config["vocab"], size=(1, args.prompt_tokens))
    context = args.prompt_tokens + args.new_tokens / 2

    runs = []
    for target in args.targets:
        for precision, model in built.items():
            cache = "static" if target.startswith("xla") else args.cache
            try:
                start = time.perf_counter()
                options = ORT_EXACT if args.ort_exact and target.startswith("onnxruntime") else {}
                exe = portarun.compile(model, target, precision, **options)
                portarun.generate(exe, prompt, 4, cache=cache, capacity=_capacity(args, cache))  # warm-up
                warm = time.perf_counter() - start
            except PortarunError as exc:
                print(f"skip {target} {precision}: {exc}", file=sys.stderr)
                continue
            runs.append({"target": target, "precision": precision, "cache": cache, "exe": exe, "results": [],
                         "compile_and_warmup_s": warm})
    for _ in range(args.repeats):  # round robin: each configuration once per round
        for run in runs:
            run["results"].append(portarun.generate(run["exe"], prompt, args.new_tokens, cache=run["cache"],
                                                    capacity=_capacity(args, run["cache"])))

    rows = []
    for run in runs:
        results = run["results"]
        steps = [s for r in results for s in r.step_s]
        tokens = [r.tokens for r in results]
        row = {"target": run["target"], "precision": run["precision"], "cache": run["cache"],
               "decode_tokens_per_s": statistics.median(r.decode_tokens_per_s for r in results),
               "tpot_median_ms": 1e3 * statistics.median(steps), "tpot_p99_ms": 1e3 * float(np.percentile(steps, 99)),
               "ttft_ms": 1e3 * statistics.median(r.ttft_s for r in results),
               "same_tokens_every_repeat": all(np.array_equal(t, tokens[0]) for t in tokens),
               "compile_and_warmup_s": run["compile_and_warmup_s"],
               "provenance": run["exe"].provenance.to_dict(), "tokens": tokens[0].tolist()}
        per_step = bytes_per_decode_step(built[run["precision"]], config, context)
        roof = memory_roofline(bandwidth, per_step, achieved_tokens_per_second=row["decode_tokens_per_s"])
        row.update({"bytes_per_step": per_step, "roofline_tokens_per_s": roof.tokens_per_second,
                    "mbu": roof.fraction})
        rows.append(row)
        run["exe"].close()

    baseline = next((r["decode_tokens_per_s"] for r in rows
                     if r["target"] == "onnxruntime:cpu" and r["precision"] == "fp32"), None)
    print(f"\n{args.model}: {config}, batch 1, prompt {args.prompt_tokens}, {args.new_tokens} new tokens, "
          f"{args.repeats} repeats; measured copy bandwidth {bandwidth / 1e9:.1f} GB/s (NumPy copy, one thread "
          f"{measured['one_thread'] / 1e9:.1f}, all threads {measured['all_threads'] / 1e9:.1f}); roofline and MBU use "
          f"the higher")
    header = f"{'target':<16} {'precision':<12} {'cache':<8} {'tok/s':>8} {'vs ort fp32':>11} {'TPOT med':>9} " \
             f"{'p99':>8} {'TTFT':>8} {'MB/step':>8} {'roofline':>9} {'MBU':>5}"
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['decode_tokens_per_s'] / baseline:.2f}x" if baseline else "-"
        print(f"{r['target']:<16} {r['precision']:<12} {r['cache']:<8} {r['decode_tokens_per_s']:>8.1f} {ratio:>11} "
              f"{r['tpot_median_ms']:>7.2f}ms {r['tpot_p99_ms']:>6.2f}ms {r['ttft_ms']:>6.1f}ms "
              f"{r['bytes_per_step'] / 1e6:>8.1f} {r['roofline_tokens_per_s']:>9.1f} {r['mbu']:>5.2f}")
    fp32_tokens = {r["target"]: r["tokens"] for r in rows if r["precision"] == "fp32"}
    if len(fp32_tokens) > 1:
        same = len({json.dumps(t) for t in fp32_tokens.values()}) == 1
        print(f"fp32 greedy tokens identical across {', '.join(fp32_tokens)}: {same}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "config": config, "bandwidth_bytes_per_s": bandwidth, "bandwidth_measured": measured,
                                         "rows": rows}, indent=2, default=str))
    return 0


def _capacity(args, cache: str) -> int | None:
    from portarun.generate import static_capacity

    return static_capacity(args.prompt_tokens + args.new_tokens - 1, 128) if cache == "static" else None


if __name__ == "__main__":
    raise SystemExit(main())
