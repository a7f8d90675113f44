"""Small ONNX models the XLA backend tests build with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import portarun

OPSET = [helper.make_opsetid("", 21)]


def model(nodes, inputs, outputs, initializers=(), name="m", opset=OPSET) -> portarun.Model:
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    proto = helper.make_model(graph, opset_imports=opset)
    proto.ir_version = 10
    return portarun.load(proto)


def tensor(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def reshape_chain() -> portarun.Model:
    """x[batch, seq, 8] -> Shape -> Gather(0), Gather(1) -> Concat([b, s, 2, 4]) -> Reshape -> Transpose."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "i0"], ["b"], axis=0),
        helper.make_node("Gather", ["shape", "i1"], ["s"], axis=0),
        helper.make_node("Concat", ["b", "s", "heads", "dim"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["t", "w"], ["y"]),
    ]
    inits = [init("i0", np.array([0], np.int64)), init("i1", np.array([1], np.int64)),
             init("heads", np.array([2], np.int64)), init("dim", np.array([4], np.int64)),
             init("w", np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))]
    return model(nodes, [tensor("x", TensorProto.FLOAT, ["batch", "seq", 8])],
                 [tensor("y", TensorProto.FLOAT, ["batch", 2, "seq", 3])], inits, name="reshape_chain")


def if_model() -> portarun.Model:
    then_graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["out_then"])], "then", [],
                                   [tensor("out_then", TensorProto.FLOAT, [3])])
    else_graph = helper.make_graph([helper.make_node("Neg", ["x"], ["out_else"])], "else", [],
                                   [tensor("out_else", TensorProto.FLOAT, [3])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)]
    return model(nodes, [tensor("x", TensorProto.FLOAT, [3])], [tensor("y", TensorProto.FLOAT, [3])],
                 [init("two", np.float32(2)), init("zero", np.float32(0))], name="if_model")


def loop_model(trip_count_input: bool = False) -> portarun.Model:
    """acc = x; repeat n times: acc = acc * 0.5 + x; also stacks acc per iteration (scan output)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Mul", ["acc_in", "half"], ["scaled"]),
         helper.make_node("Add", ["scaled", "x"], ["acc_out"]),
         helper.make_node("Identity", ["acc_out"], ["stacked"])],
        "body",
        [tensor("i", TensorProto.INT64, []), tensor("cond_in", TensorProto.BOOL, []),
         tensor("acc_in", TensorProto.FLOAT, [2])],
        [tensor("cond_out", TensorProto.BOOL, []), tensor("acc_out", TensorProto.FLOAT, [2]),
         tensor("stacked", TensorProto.FLOAT, [2])])
    inputs = [tensor("x", TensorProto.FLOAT, [2])]
    inits = [init("half", np.float32(0.5)), init("yes", np.array(True))]
    if trip_count_input:
        inputs.append(tensor("n", TensorProto.INT64, []))
    else:
        inits.append(init("n", np.array(100, np.int64)))
    nodes = [helper.make_node("Loop", ["n", "yes", "x"], ["acc", "history"], body=body)]
    return model(nodes, inputs, [tensor("acc", TensorProto.FLOAT, [2]), tensor("history", TensorProto.FLOAT, ["trips", 2])],
                 inits, name="loop_model")


def scan_model() -> portarun.Model:
    """Running sum over the sequence axis: state += x_t; outputs each state."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y_t"])],
        "body", [tensor("s_in", TensorProto.FLOAT, [4]), tensor("x_t", TensorProto.FLOAT, [4])],
        [tensor("s_out", TensorProto.FLOAT, [4]), tensor("y_t", TensorProto.FLOAT, [4])])
    nodes = [helper.make_node("Scan", ["s0", "xs"], ["s", "ys"], body=body, num_scan_inputs=1)]
    return model(nodes, [tensor("s0", TensorProto.FLOAT, [4]), tensor("xs", TensorProto.FLOAT, ["seq", 4])],
                 [tensor("s", TensorProto.FLOAT, [4]), tensor("ys", TensorProto.FLOAT, ["seq", 4])],
                 name="scan_model")


def dequantize_matmul(block_size: int = 0, zero_point: bool = True) -> portarun.Model:
    """x[batch, 64] @ DequantizeLinear(W int8 [64, 16] per-channel, or int4 blocked along K)."""
    rng = np.random.default_rng(1)
    K, N = 64, 16
    if block_size:
        wq = rng.integers(-8, 8, size=(K, N))
        w_init = helper.make_tensor("wq", TensorProto.INT4, [K, N], wq.reshape(-1).tolist())
        scale = (rng.random((K // block_size, N)) * 0.1 + 0.01).astype(np.float32)
        zero = helper.make_tensor("zp", TensorProto.INT4, [K // block_size, N],
                                  rng.integers(-2, 2, size=(K // block_size, N)).reshape(-1).tolist())
        attrs = {"axis": 0, "block_size": block_size}
    else:
        w_init = init("wq", rng.integers(-127, 127, size=(K, N)).astype(np.int8))
        scale = (rng.random(N) * 0.1 + 0.01).astype(np.float32)
        zero = init("zp", rng.integers(-5, 5, size=N).astype(np.int8))
        attrs = {"axis": 1}
    dq_inputs = ["wq", "scale"] + (["zp"] if zero_point else [])
    nodes = [helper.make_node("DequantizeLinear", dq_inputs, ["w"], **attrs),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    inits = [w_init, init("scale", scale)] + ([zero] if zero_point else [])
    return model(nodes, [tensor("x", TensorProto.FLOAT, ["batch", K])], [tensor("y", TensorProto.FLOAT, ["batch", N])],
                 inits, name=f"dq_matmul_b{block_size}")


def unknown_ops() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("FancyOp", ["a"], ["b"], domain="example.custom"),
             helper.make_node("OtherOp", ["b"], ["y"], domain="example.custom")]
    graph = helper.make_graph(nodes, "unknown", [tensor("x", TensorProto.FLOAT, [2])],
                              [tensor("y", TensorProto.FLOAT, [2])])
    proto = helper.make_model(graph, opset_imports=OPSET + [helper.make_opsetid("example.custom", 1)])
    proto.ir_version = 10
    return proto
