"""One shared Executable per CPU backend, run by 1 thread and by 8: runs, mismatches, exceptions, wall time.

    python tools/bench_threads.py                     # mlp, 400 runs per configuration
    python tools/bench_threads.py --model cnn --runs 200 --json threads.json

Both configurations do the same total number of runs over the same 8 distinct inputs
(batch sizes 1/2/3/5 mixed); every result is compared bitwise with a single-threaded run
of its input. The 8-thread wall time says whether the backend overlaps callers (a pool of
OpenVINO requests, ORT's concurrent Run) or serializes them; on a 2-core machine nothing
can be much faster than 1 thread, only not wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import portarun  # noqa: E402
from portarun import models  # noqa: E402
from portarun.errors import PortarunError  # noqa: E402
from portarun_conformance.threads import expected_results, hammer  # noqa: E402

BATCHES = (1, 2, 3, 5, 1, 2, 3, 5)


def measure(spec: str, model_name: str, runs: int) -> dict:
    # "openvino:cpu+throughput" compiles with performance_hint=throughput (a pool of several requests)
    target, _, hint = spec.partition("+")
    options = {"performance_hint": hint} if hint else {}
    model = models.build(model_name)
    feeds = [portarun.random_feeds(model.inputs, seed=100 + i, dims={"batch": BATCHES[i]}) for i in range(8)]
    with portarun.compile(model, target, **options) as exe:
        expected = expected_results(exe, feeds)
        expected_results(exe, feeds)  # warm: every signature compiled, caches hot
        row = {"target": spec, "model": model_name}
        for threads in (1, 8):
            # one thread cycles through all 8 inputs; 8 threads take one input each
            if threads == 1:
                report = _single(exe, feeds, expected, runs)
            else:
                report = hammer(exe, feeds, threads=8, runs_per_thread=runs // 8, expected=expected)
            row[f"t{threads}"] = {"runs": report.runs, "mismatches": report.mismatches,
                                  "exceptions": len(report.exceptions), "hung": report.hung_threads,
                                  "wall_s": round(report.wall_seconds, 4),
                                  "first_exception": report.exceptions[0] if report.exceptions else None}
        row["provenance"] = {k: exe.provenance.details.get(k) for k in ("infer_requests", "num_streams")
                             if k in exe.provenance.details}
    return row


def _single(exe, feeds, expected, runs):
    # hammer with one thread running each input in turn: same code path, same comparison
    from portarun_conformance.threads import ThreadReport

    total = ThreadReport(threads=1)
    for index in range(len(feeds)):
        part = hammer(exe, [feeds[index]], threads=1, runs_per_thread=runs // len(feeds), expected=[expected[index]])
        total.runs += part.runs
        total.mismatches += part.mismatches
        total.exceptions += part.exceptions
        total.hung_threads += part.hung_threads
        total.wall_seconds += part.wall_seconds
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--runs", type=int, default=400, help="total runs per configuration (default 400)")
    parser.add_argument("--targets", default="onnxruntime:cpu,openvino:cpu,openvino:cpu+throughput,xla:cpu,reference:cpu")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    rows = []
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'target':<24} {'runs':>5} {'mism':>5} {'exc':>4} {'1-thread s':>11} {'8-thread s':>11}  notes")
    for target in args.targets.split(","):
        runs = max(16, args.runs // 10) if target.startswith("reference") else args.runs
        try:
            row = measure(target, args.model, runs)
        except PortarunError as exc:
            print(f"{target:<24} skipped: {exc}")
            continue
        rows.append(row)
        one, eight = row["t1"], row["t8"]
        print(f"{target:<24} {one['runs']}/{eight['runs']:<4} {one['mismatches']}/{eight['mismatches']:<3} "
              f"{one['exceptions']}/{eight['exceptions']:<2} {one['wall_s']:>11.4f} {eight['wall_s']:>11.4f}  "
              f"{row['provenance'] or ''}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["t1"]["mismatches"] + r["t8"]["mismatches"] + r["t1"]["exceptions"] + r["t8"]["exceptions"] == 0
                    for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
