"""Median overhead of portarun's Executable.run over a bare onnxruntime.InferenceSession.run.

Both run the same ONNX model in one process, interleaved call by call (so machine
noise hits both alike), on one session configuration. Reports medians and the ratio.

    python tools/bench_run_overhead.py [--model builtin:transformer] [--batch 1] [--seq 128] [--runs 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

import portarun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:transformer")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=2000)
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
    calls = [lambda: session.run(names, feeds), lambda: exe.run(feeds), lambda: control.run(names, feeds)]
    samples: list[list[float]] = [[], [], []]
    for i in range(args.runs):
        # rotate the order so none of the three always runs with the warmest cache
        for k in range(3):
            which = (i + k) % 3
            start = time.perf_counter()
            calls[which]()
            samples[which].append(time.perf_counter() - start)
    direct, wrapped, aa = samples

    # Overhead of the wrapper alone: run() on a session whose _run is a no-op.
    check_only = []
    for _ in range(args.runs):
        start = time.perf_counter()
        portarun.backend.check_feeds(exe.inputs, feeds)
        check_only.append(time.perf_counter() - start)

    d, w, a, c = (statistics.median(x) * 1e3 for x in (direct, wrapped, aa, check_only))
    paired = statistics.median(wi - di for wi, di in zip(wrapped, direct)) * 1e3
    paired_aa = statistics.median(ai - di for ai, di in zip(aa, direct)) * 1e3
    print(f"model {model.name} batch {args.batch} seq {args.seq}, {args.runs} interleaved runs each, "
          f"onnxruntime {ort.__version__}")
    print(f"  onnxruntime.InferenceSession.run  median {d:.4f} ms")
    print(f"  portarun Executable.run           median {w:.4f} ms")
    print(f"  feed checking alone               median {c * 1e3:.2f} us")
    print(f"  second bare session (A/A control) median {a:.4f} ms")
    print(f"  overhead (median ratio - 1)       {(w / d - 1) * 100:+.2f} %   (A/A control {(a / d - 1) * 100:+.2f} %)")
    print(f"  overhead (median paired diff)     {paired / d * 100:+.2f} %   (A/A control {paired_aa / d * 100:+.2f} %)")


if __name__ == "__main__":
    main()
