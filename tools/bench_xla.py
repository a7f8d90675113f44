"""xla:cpu against onnxruntime:cpu, side by side in one process; plus the node-suite count and a GPU check.

Latency: the same model and feeds, every executable warmed up, then timed in short
interleaved blocks (each runtime keeps its own thread pool; alternating call by call
would time one against the other's spinning threads). A second onnxruntime executable
is the A/A control: its ratio to the first is the noise floor. Medians, p90 and the
xla/onnxruntime ratio per batch size. Compile time is reported separately (first
compile for the shape, i.e. ONNX lowering + tracing + XLA compile).

    python tools/bench_xla.py                       # transformer block, batch 1 and 8, seq 128
    python tools/bench_xla.py --model minilm.onnx   # any ONNX encoder with (batch, seq) inputs
    python tools/bench_xla.py --minilm-sized        # a 6-layer hidden-384 built-in encoder
    python tools/bench_xla.py --node-suite xla:cpu onnxruntime:cpu   # pass counts, rtol 1e-3 atol 1e-5
    python tools/bench_xla.py --gpu                 # built-ins on xla:gpu fp32/bf16 vs xla:cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

import portarun
from portarun.benchmark import interleaved_samples
from portarun import models


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_ms": round(statistics.median(ordered), 3),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 3), "runs": len(ordered)}


def _load(args) -> portarun.Model:
    if args.minilm_sized:
        return models.build("transformer", hidden=384, heads=12, ffn=1536, layers=6)
    return portarun.load(args.model)


def latency(args) -> dict:
    model = _load(args)
    report = {"model": model.name, "seq": args.seq, "environment": portarun._sysinfo.environment()
              if hasattr(portarun, "_sysinfo") else {}, "batches": {}}
    for batch in args.batch:
        dims = {"batch": batch, "seq": args.seq, "sequence": args.seq, "batch_size": batch, "sequence_length": args.seq}
        # token ids below 1000, token types 0, attention masks all ones (BERT-style encoders)
        int_high = {"input_ids": 1000, "token_type_ids": 1, "attention_mask": 1}
        feeds = portarun.random_feeds(model.inputs, dims=dims, seed=batch, int_high=int_high)
        for name in feeds:
            if name == "attention_mask":
                feeds[name] = np.ones_like(feeds[name])
        start = time.perf_counter()
        xla = portarun.compile(model, "xla:cpu")
        xla.run(feeds)  # first run compiles for this shape
        xla_compile = time.perf_counter() - start
        start = time.perf_counter()
        ort = portarun.compile(model, "onnxruntime:cpu")
        ort.run(feeds)
        ort_compile = time.perf_counter() - start
        control = portarun.compile(model, "onnxruntime:cpu")
        want, got = ort.run(feeds), xla.run(feeds)
        max_err = max(float(np.max(np.abs(got[k].astype(np.float64) - want[k]))) for k in want)
        for exe in (xla, ort, control):
            for _ in range(args.warmup):
                exe.run(feeds)
        samples = interleaved_samples({"xla": lambda: xla.run(feeds), "onnxruntime": lambda: ort.run(feeds),
                                "onnxruntime (A/A)": lambda: control.run(feeds)}, args.runs)
        stats = {name: _stats(v) for name, v in samples.items()}
        base = stats["onnxruntime"]["median_ms"]
        report["batches"][batch] = {
            **stats,
            "ratio_xla_over_ort": round(stats["xla"]["median_ms"] / base, 3),
            "ratio_aa_control": round(stats["onnxruntime (A/A)"]["median_ms"] / base, 3),
            "compile_s": {"xla_first_shape": round(xla_compile, 3), "onnxruntime_session": round(ort_compile, 3)},
            "xla_compile_count": xla.provenance.details["compile_count"],
            "max_abs_diff_vs_ort": max_err,
        }
        print(f"batch {batch}: xla {stats['xla']['median_ms']:.2f} ms, onnxruntime {base:.2f} ms, "
              f"ratio {report['batches'][batch]['ratio_xla_over_ort']:.2f} "
              f"(A/A {report['batches'][batch]['ratio_aa_control']:.2f}); compile xla {xla_compile:.2f} s, "
              f"ort {ort_compile:.2f} s; max |diff| {max_err:.2e}", flush=True)
    return report


def node_suite(targets: list[str]) -> dict:
    from portarun_conformance.node_suite import load_node_cases, run_node_suite

    cases = load_node_cases()
    report = {}
    for target in targets:
        result = run_node_suite(target, cases)
        report[target] = {"counts": result.counts, "seconds": round(result.seconds, 1)}
        print(f"{target}: {result.counts} in {result.seconds:.0f} s", flush=True)
    return report


def gpu(args) -> dict:
    report = {}
    for name in models.names(kind="model"):
        model = models.build(name)
        entry = models.get(name)
        feeds = portarun.random_feeds(model.inputs, dims=entry.default_dims)
        cpu = portarun.compile(model, "xla:cpu").run(feeds)
        for precision in ("fp32", "bf16"):
            exe = portarun.compile(model, "xla:gpu", precision)
            out = exe.run(feeds)
            for _ in range(args.warmup):
                exe.run(feeds)
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                exe.run(feeds)
                times.append((time.perf_counter() - start) * 1e3)
            err = max(float(np.max(np.abs(out[k] - cpu[k]))) for k in cpu)
            scale = max(float(np.max(np.abs(cpu[k]))) for k in cpu)
            report[f"{name}/{precision}"] = {"max_abs_diff_vs_cpu": err, "max_abs_ref": scale, **_stats(times),
                                             "device": exe.provenance.device}
            print(f"{name} {precision}: max|gpu-cpu| {err:.2e} (ref max {scale:.2e}), "
                  f"median {statistics.median(times):.3f} ms on {exe.provenance.device}", flush=True)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:transformer")
    parser.add_argument("--minilm-sized", action="store_true", help="6 layers, hidden 384, 12 heads, ffn 1536")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--node-suite", nargs="*", metavar="TARGET")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    if args.node_suite is not None:
        report = node_suite(args.node_suite or ["xla:cpu", "onnxruntime:cpu"])
    elif args.gpu:
        report = gpu(args)
    else:
        report = latency(args)
    if args.json:
        from portarun.plugin import atomic_file

        with atomic_file(args.json, "w") as handle:
            json.dump(report, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
