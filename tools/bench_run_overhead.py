"""Median overhead of portarun's Executable.run over a bare onnxruntime.InferenceSession.run.

Both run the same ONNX model in one process, alternating in blocks (so machine noise hits
both alike; see portarun.benchmark.interleaved_samples), with the same session settings, plus
a second bare session as an A/A control for the noise floor. Reports medians and ratios.

    python tools/bench_run_overhead.py [--model builtin:transformer] [--batch 1] [--seq 128] [--runs 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

import portarun
from portarun.benchmark import interleaved_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:transformer")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--block", type=int, default=20, help="calls per turn when alternating runners")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for both (0 = ORT default)")
    args = parser.parse_args()

    model = portarun.load(args.model)
    options = {"threads": args.threads} if args.threads else {}
    exe = portarun.compile(model, "onnxruntime:cpu", **options)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if args.threads:
        so.intra_op_num_threads = args.threads
    session = ort.InferenceSession(model.serialized(), so, providers=["CPUExecutionProvider"])
    feeds = portarun.random_feeds(model.inputs, dims={"batch": args.batch, "seq": args.seq})
    names = [o.name for o in session.get_outputs()]

    np.testing.assert_allclose(exe.run(feeds)[names[0]], session.run(names, feeds)[0], rtol=1e-6, atol=1e-6)
    for _ in range(50):  # warm-up both
        exe.run(feeds)
        session.run(names, feeds)

    # A second bare session is the A/A control: its gap to the first is the noise floor.
    control = ort.InferenceSession(model.serialized(), so, providers=["CPUExecutionProvider"])
    samples = interleaved_samples({"direct": lambda: session.run(names, feeds), "portarun": lambda: exe.run(feeds),
                                   "control": lambda: control.run(names, feeds)}, args.runs, block=args.block)
    direct, wrapped, aa = samples["direct"], samples["portarun"], samples["control"]

    # Overhead of the wrapper alone: run() on a session whose _run is a no-op.
    check_only = []
    for _ in range(args.runs):
        start = time.perf_counter()
        portarun.backend.check_feeds(exe.inputs, feeds)
        check_only.append(time.perf_counter() - start)

    d, w, a = (statistics.median(x) for x in (direct, wrapped, aa))  # already in ms
    c = statistics.median(check_only) * 1e3
    print(f"model {model.name} batch {args.batch} seq {args.seq}, {args.runs} runs each in alternating blocks of {args.block}, "
          f"onnxruntime {ort.__version__}")
    print(f"  onnxruntime.InferenceSession.run  median {d:.4f} ms")
    print(f"  portarun Executable.run           median {w:.4f} ms")
    print(f"  feed checking alone               median {c * 1e3:.2f} us")
    print(f"  second bare session (A/A control) median {a:.4f} ms")
    print(f"  overhead (median ratio - 1)       {(w / d - 1) * 100:+.2f} %   (A/A control {(a / d - 1) * 100:+.2f} %)")


if __name__ == "__main__":
    main()
