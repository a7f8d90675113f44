"""Mutation fuzz: malformed models on every CPU backend; a table of ok / PortarunError / leak / killed / timeout.

    python tools/fuzz.py                                  # 200 mutants, every available CPU backend
    python tools/fuzz.py --count 1400 --seed 0 --workers 2 --json fuzz.json
    python tools/fuzz.py --targets onnxruntime:cpu --count 50 --show

Mutants are seeded (same --seed, same mutants). Each case runs in a reusable worker process with
a memory limit (--memory-mb) and a timeout (--timeout); see portarun_conformance.fuzz. Exit code
1 when any case leaked a non-PortarunError, killed its worker or timed out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from portarun_conformance.fuzz import fuzz  # noqa: E402

SDK_OF = {"onnxruntime:cpu": "onnxruntime", "openvino:cpu": "openvino", "xla:cpu": "jax", "reference:cpu": "onnx"}


def available_targets() -> list[str]:
    return [t for t, module in SDK_OF.items() if importlib.util.find_spec(module) is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", help="comma-separated (default: every available CPU backend)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case (default 30)")
    parser.add_argument("--memory-mb", type=int, default=4096, help="address-space limit per worker (default 4096)")
    parser.add_argument("--show", action="store_true", help="print every leak, kill and timeout")
    parser.add_argument("--json", help="write counts and findings to this file")
    args = parser.parse_args(argv)
    targets = args.targets.split(",") if args.targets else available_targets()
    print(f"{args.count} mutants (seed {args.seed}) x {', '.join(targets)}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 200 == 0 or done == total:
            print(f"  {done}/{total} cases, {time.perf_counter() - start:.0f} s", flush=True)

    report = fuzz(args.count, targets, seed=args.seed, workers=args.workers, timeout_s=args.timeout,
                  memory_mb=args.memory_mb, progress=progress)
    print(report.table())
    print(f"{time.perf_counter() - start:.0f} s, {report.restarts} worker restarts")
    if args.show or report.findings:
        for finding in report.findings[:50 if not args.show else None]:
            print(f"  #{finding['mutant']} {finding['seed']} {'+'.join(finding['mutations'])} on {finding['target']}: "
                  f"{finding['outcome']} at {finding['stage']}: {finding['type']} {finding['message'][:160]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"counts": {t: dict(c) for t, c in report.counts.items()},
                                               "findings": report.findings}, indent=2) + "\n")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
