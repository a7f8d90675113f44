"""What isolate=True costs per run: the same model, in-process and in a worker process, side by side.

    python tools/bench_isolation.py                       # mlp batch 1 and cnn batch 8, onnxruntime:cpu
    python tools/bench_isolation.py --targets onnxruntime:cpu,openvino:cpu --runs 300

Both executables are compiled from the same model; runs alternate between them (round robin, so
a noisy neighbour slows both alike) after a warm-up. The table shows median and p90 latency per
run and the median difference in microseconds: the pipe round trip plus pickling the feeds and
outputs. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import portarun  # noqa: E402
from portarun import models  # noqa: E402
from portarun.errors import PortarunError  # noqa: E402

CASES = (("mlp", {"batch": 1}), ("cnn", {"batch": 8}))


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(target: str, name: str, dims: dict, runs: int) -> dict:
    model = models.build(name)
    feeds = portarun.random_feeds(model.inputs, seed=0, dims=dims)
    feed_bytes = sum(a.nbytes for a in feeds.values())
    with portarun.compile(model, target) as local, portarun.compile(model, target, isolate=True) as isolated:
        out_bytes = sum(a.nbytes for a in local.run(feeds).values())
        for _ in range(10):
            local.run(feeds)
            isolated.run(feeds)
        times: dict[str, list[float]] = {"in-process": [], "isolated": []}
        for _ in range(runs):
            for label, exe in (("in-process", local), ("isolated", isolated)):
                start = time.perf_counter()
                exe.run(feeds)
                times[label].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    return {"target": target, "case": f"{name} {dims}", "bytes": feed_bytes + out_bytes, **medians,
            "p90_in": _p(times["in-process"], 0.9) * 1e6, "p90_iso": _p(times["isolated"], 0.9) * 1e6,
            "cost_us": medians["isolated"] - medians["in-process"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="onnxruntime:cpu")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args(argv)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'target':<16} {'case':<20} {'bytes':>9} {'in-proc µs':>11} {'isolated µs':>12} "
          f"{'p90 in':>8} {'p90 iso':>8} {'cost µs':>8}")
    for target in args.targets.split(","):
        for name, dims in CASES:
            try:
                row = measure(target, name, dims, args.runs)
            except PortarunError as exc:
                print(f"{target:<16} {name:<20} skipped: {exc}")
                continue
            print(f"{row['target']:<16} {row['case']:<20} {row['bytes']:>9} {row['in-process']:>11.1f} "
                  f"{row['isolated']:>12.1f} {row['p90_in']:>8.1f} {row['p90_iso']:>8.1f} {row['cost_us']:>8.1f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
