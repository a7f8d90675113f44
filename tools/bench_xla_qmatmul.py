"""The XLA QMatMul forms side by side on this CPU: decode-shaped matmuls through portarun.compile.

    python tools/bench_xla_qmatmul.py                      # decoder-small's layer shapes, 1 row, 4 layers
    python tools/bench_xla_qmatmul.py --rows 1,16 --layers 8 --repeats 30
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 python tools/bench_xla_qmatmul.py   # as on an AVX2-only machine

The model holds ``--layers`` copies (distinct weights, so they do not all sit in cache) of decoder-small's
four MatMuls (qkv 768x1280, o 768x768, gate/up 768x4096, down 2048x768), as a float MatMul for fp32 and as
DequantizeLinear -> MatMul for int8 (per channel, symmetric) and int4 (blocks of 128 along K, symmetric),
which xla:cpu fuses into QMatMul in the form ``quantized_matmul`` names. Each configuration runs the same
feeds in turn (round robin, so a noisy neighbour slows all alike); the table shows the median time of one
call, the time per weight byte read, and the ratio to fp32 in this run. The load average is printed:
compare ratios within one run. Weights are random (the timing does not depend on their values); the last
column is the largest error vs the dequantized float product, relative to its largest value.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import portarun  # noqa: E402

SHAPES = {"qkv": (768, 1280), "o": (768, 768), "up": (768, 4096), "down": (2048, 768)}
BLOCK = 128


def _weights(layers: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Per matmul name: the int8 weight, its per-channel scale, the int4 weight and its block scales."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer in range(layers):
        for kind, (k, n) in SHAPES.items():
            out[f"{kind}{layer}"] = {
                "q8": rng.integers(-127, 128, (k, n), dtype=np.int8),
                "s8": (rng.random(n) * 0.01 + 0.001).astype(np.float32),
                "q4": rng.integers(-8, 8, (k, n)).astype(np.int8),
                "s4": (rng.random((k // BLOCK, n)) * 0.1 + 0.01).astype(np.float32),
            }
    return out


def _dequantized(w: dict[str, np.ndarray], precision: str) -> np.ndarray:
    if precision == "int8":
        return w["q8"].astype(np.float32) * w["s8"]
    return w["q4"].astype(np.float32) * np.repeat(w["s4"], BLOCK, axis=0)


def build(weights, precision: str) -> portarun.Model:
    """x [rows, 768], h [rows, 2048] -> one output per matmul kind, the sum over layers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    per_kind: dict[str, list[str]] = {kind: [] for kind in SHAPES}
    for name, w in weights.items():
        kind = name.rstrip("0123456789")
        source = "h" if kind == "down" else "x"
        if precision == "fp32":
            inits.append(numpy_helper.from_array(_dequantized(w, "int8"), f"{name}_w"))
        elif precision == "int8":
            inits += [numpy_helper.from_array(w["q8"], f"{name}_q"), numpy_helper.from_array(w["s8"], f"{name}_s")]
            nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s"], [f"{name}_w"], axis=1))
        else:
            k, n = w["q4"].shape
            inits += [helper.make_tensor(f"{name}_q", TensorProto.INT4, [k, n], w["q4"].reshape(-1).tolist()),
                      numpy_helper.from_array(w["s4"], f"{name}_s")]
            nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s"], [f"{name}_w"],
                                          axis=0, block_size=BLOCK))
        nodes.append(helper.make_node("MatMul", [source, f"{name}_w"], [f"{name}_y"]))
        per_kind[kind].append(f"{name}_y")
    for kind, names in per_kind.items():
        nodes.append(helper.make_node("Sum", names, [kind]))
    outputs = [helper.make_tensor_value_info(kind, TensorProto.FLOAT, ["rows", n]) for kind, (_, n) in SHAPES.items()]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 768]),
              helper.make_tensor_value_info("h", TensorProto.FLOAT, ["rows", 2048])]
    graph = helper.make_graph(nodes, f"qmatmul_{precision}", inputs, outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    proto.ir_version = 10
    return portarun.load(onnx.ModelProto.FromString(proto.SerializeToString()))


def _expected(weights, precision: str, feeds) -> dict[str, np.ndarray]:
    sums = {kind: 0.0 for kind in SHAPES}
    for name, w in weights.items():
        kind = name.rstrip("0123456789")
        source = feeds["h" if kind == "down" else "x"].astype(np.float64)
        sums[kind] = sums[kind] + source @ _dequantized(w, "int8" if precision == "fp32" else precision)
    return sums


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rows", default="1", help="comma-separated row counts (1: decode at batch 1)")
    parser.add_argument("--forms", default="native,int8dot,chunked", help="QMatMul forms to compare")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    weights = _weights(args.layers)
    forms = [f for f in args.forms.split(",") if f]
    configs = [("fp32", "fp32", None)] + [(f"{p}/{f}", p, f) for p in ("int8", "int4") for f in forms]
    weight_bytes = {"fp32": 4.0, "int8": 1.0, "int4": 0.5}
    elements = args.layers * sum(k * n for k, n in SHAPES.values())
    print(f"# {args.layers} layers x {len(SHAPES)} matmuls ({elements / 1e6:.1f}M weights); "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load before {os.getloadavg()[0]:.2f}")
    executables = {}
    for label, precision, form in configs:
        options = {} if form is None else {"quantized_matmul": form}
        target_precision = {"fp32": "fp32", "int8": "int8-weight", "int4": "int4-weight"}[precision]
        executables[label] = portarun.compile(build(weights, precision), "xla:cpu", target_precision, **options)
    for rows in (int(r) for r in args.rows.split(",")):
        rng = np.random.default_rng(rows)
        feeds = {"x": rng.standard_normal((rows, 768)).astype(np.float32),
                 "h": rng.standard_normal((rows, 2048)).astype(np.float32)}
        errors, times = {}, {label: [] for label in executables}
        for label, exe in executables.items():  # warm up (compile) and check the values once
            got = exe.run(feeds)
            want = _expected(weights, label.split("/")[0], feeds)
            errors[label] = max(float(np.max(np.abs(got[k] - want[k])) / np.max(np.abs(want[k]))) for k in SHAPES)
        for _ in range(args.repeats):
            for label, exe in executables.items():
                start = time.perf_counter()
                exe.run(feeds)
                times[label].append(time.perf_counter() - start)
        base = statistics.median(times["fp32"])
        print(f"\nrows={rows}   (load {os.getloadavg()[0]:.2f})")
        print(f"{'config':18s} {'median us':>10s} {'GB/s':>7s} {'vs fp32':>8s} {'max rel err':>12s}")
        for label, _, _ in configs:
            med = statistics.median(times[label])
            gbps = elements * weight_bytes[label.split("/")[0]] / med / 1e9
            print(f"{label:18s} {med * 1e6:10.0f} {gbps:7.2f} {base / med:7.2f}x {errors[label]:12.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
