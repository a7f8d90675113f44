"""tensorrt:cuda (fp32, fp16) against onnxruntime on the same GPU, side by side; a device check too.

Needs TensorRT and an NVIDIA GPU (it exits with code 2 and the reason elsewhere).
Every executable runs the same model and feeds in one process, interleaved in short
blocks so noise hits them alike; a second executable of the baseline is the A/A control.
Before timing, each result is compared with onnxruntime:cpu fp32 (max abs difference),
so a fast wrong engine shows. Then compile time: cold build vs engine-cache hit.
End-to-end latency: host->device copies, execution and device->host copies included.

    python tools/bench_tensorrt.py [--model builtin:transformer] [--batch 1] [--seq 128] [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile

import numpy as np

import portarun
from portarun.benchmark import interleaved_samples
from portarun.errors import PortarunError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:transformer")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    try:
        portarun.get_backend("tensorrt").devices()
    except PortarunError as exc:
        print(f"bench_tensorrt: {exc}", file=sys.stderr)
        return 2
    model = portarun.load(args.model)
    dims = {"batch": args.batch, "seq": args.seq}
    feeds = portarun.random_feeds(model.inputs, seed=0, dims=dims)
    reference = portarun.compile(model, "onnxruntime:cpu").run(feeds)
    profile = ";".join(f"{name}:1,{size},{max(size, 2 * size)}" for name, size in dims.items()
                       if any(name in (s.shape or ()) for s in model.inputs))
    report: dict = {"model": args.model, "dims": dims, "latency_ms": {}, "max_abs_diff": {}}
    with tempfile.TemporaryDirectory(prefix="bench-trt-cache-") as cache:
        candidates = {
            "onnxruntime:cuda fp32": ("onnxruntime:cuda", "fp32", {}),
            "onnxruntime:cuda fp32 (A/A)": ("onnxruntime:cuda", "fp32", {}),
            "tensorrt:cuda fp32": ("tensorrt:cuda", "fp32", {"dim_ranges": profile, "cache_dir": cache}),
            "tensorrt:cuda fp16": ("tensorrt:cuda", "fp16", {"dim_ranges": profile, "cache_dir": cache}),
        }
        executables = {}
        for label, (target, precision, options) in candidates.items():
            try:
                executables[label] = portarun.compile(model, target, precision, **options)
            except PortarunError as exc:
                print(f"skipping {label}: {exc}", file=sys.stderr)
        for label, exe in executables.items():
            out = exe.run(feeds)
            report["max_abs_diff"][label] = max(float(np.max(np.abs(out[k].astype(np.float64) - v)))
                                                for k, v in reference.items())
        runners = {label: (lambda e=exe: e.run(feeds)) for label, exe in executables.items()}
        samples = interleaved_samples(runners, args.runs, warmup=args.warmup, block=args.block)
        baseline = "onnxruntime:cuda fp32" if "onnxruntime:cuda fp32" in samples else None
        for label, values in samples.items():
            median = statistics.median(values)
            entry = {"median": median, "p99": sorted(values)[max(0, int(0.99 * len(values)) - 1)]}
            if baseline:
                entry["ratio_to_baseline"] = median / statistics.median(samples[baseline])
            report["latency_ms"][label] = entry
        for exe in executables.values():
            exe.close()
        cold = portarun.compile(model, "tensorrt:cuda", "fp32", dim_ranges=profile, cache_dir=cache + "/cold")
        warm = portarun.compile(model, "tensorrt:cuda", "fp32", dim_ranges=profile, cache_dir=cache + "/cold")
        report["compile_s"] = {"cold": cold.provenance.compile_seconds, "cached": warm.provenance.compile_seconds,
                               "cached_was_hit": warm.provenance.details["engine_cache"] == "hit"}
        report["device"] = cold.provenance.device
        report["tensorrt"] = cold.provenance.sdk_version
        cold.close(), warm.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.model} {dims} on {report['device']}, TensorRT {report['tensorrt']}")
        for label, entry in report["latency_ms"].items():
            ratio = f"  x{entry['ratio_to_baseline']:.2f}" if "ratio_to_baseline" in entry else ""
            print(f"  {label:30s} median {entry['median']:.3f} ms  p99 {entry['p99']:.3f} ms{ratio}  "
                  f"max|diff| {report['max_abs_diff'][label]:.2e}")
        print(f"  compile: cold {report['compile_s']['cold']:.1f} s, engine cache {report['compile_s']['cached']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
