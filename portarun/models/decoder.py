"""Built-in Llama-style decoder with a KV cache, generated in ONNX directly from a fixed seed.

One graph does both prefill and decode. Inputs:

- ``input_ids`` int64 [batch, seq]: the new tokens;
- ``position_ids`` int64 [batch, seq]: their absolute positions (rotary embeddings use them);
- ``attention_mask`` int64 [batch, past_seq + seq]: 1 for cache slots and new tokens to attend to,
  0 for empty slots of a preallocated cache;
- ``past_key_values.{i}.key`` / ``.value`` float32 [batch, kv_heads, past_seq, head_dim].

Outputs: ``logits`` [batch, seq, vocab] and ``present.{i}.key`` / ``.value`` =
concat(past, new) along the sequence axis. Causality is by index in that
concatenation (new token j sees slots <= past_seq + j), padding by
``attention_mask``: so a dynamic cache (past grows by one each step) and a
fixed-size cache (past_seq is the capacity, empty slots masked, the caller
writes the new entry into its buffer) run the same graph.

The blocks: RMSNorm, rotary embeddings (rotate-half form, like Llama), grouped-
query attention without repeating K/V (queries are grouped per KV head instead),
and a SwiGLU MLP. Q/K/V and gate/up are merged into one MatMul each (fewer,
larger kernels per token), weights are stored [K, N] as PyTorch exports
``nn.Linear``. Only standard ONNX ops at opset 18.

Models over ``STREAM_BYTES`` of weights (the ``1b``) are written straight to a
cached .onnx with external data (no 4 GB protobuf in memory) and loaded back.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..model import Model
from ._builder import FLOAT, INT64, IR_FOR_OPSET

OPSET = 18
STREAM_BYTES = 1 << 30  # above this many weight bytes, write weights to an external-data file as generated
NEG_INF = -1e9  # attention score for masked slots; finite so a fully masked row cannot produce NaN

def config_of(model: Model) -> dict | None:
    """The decoder config recorded in a built-in decoder's metadata, or None for other models."""
    for prop in model.proto.metadata_props:
        if prop.key == "portarun.decoder":
            return json.loads(prop.value)
    return None


def decode_step_bytes(model: Model, config: dict, context: float) -> float:
    """Bytes one batch-1 decode step must read at least, counted as stored: every weight tensor
    (4-bit weights as half a byte, plus their scales and zero points) except embedding tables,
    of which one row is read (the row's share of the table, its scales and zero points), plus the
    fp32 KV cache at ``context`` tokens. The memory roofline and MBU divide by this."""
    from ..model import stored_nbytes

    graph = model.proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    inits = {t.name: t for t in graph.initializer}
    tables: list[set[str]] = []  # each Gather'd table with its DequantizeLinear operands
    for node in graph.node:
        if node.op_type not in ("Gather", "GatherBlockQuantized"):
            continue
        names, pending = set(), [node.input[0]]
        if node.op_type == "GatherBlockQuantized":
            pending += list(node.input[2:])
        while pending:
            name = pending.pop()
            names.add(name)
            if name in producers and producers[name].op_type == "DequantizeLinear":
                pending.extend(n for n in producers[name].input if n)
        tables.append({n for n in names if n in inits})
    in_tables = set().union(*tables) if tables else set()
    total = float(sum(stored_nbytes(t) for name, t in inits.items() if name not in in_tables))
    for table in tables:
        rows = max((inits[n].dims[0] for n in table if len(inits[n].dims) == 2), default=0)
        if rows > 1:  # index tables of shapes (a [2]-long shape vector) are read whole; skip them
            total += sum(stored_nbytes(inits[n]) for n in table) / rows
    kv = 2 * config["layers"] * config["kv_heads"] * config["head_dim"] * 4 * context
    return total + kv


def parameter_count(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int) -> int:
    head_dim = hidden // heads
    per_layer = (hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden
                 + hidden * 2 * intermediate + intermediate * hidden + 2 * hidden)
    return 2 * vocab * hidden + layers * per_layer + hidden


class _Weights:
    """Float32 weights from one seeded generator, in a fixed order.

    In memory they become ordinary initializers; when ``data_file`` is set they are
    appended to it and the initializer points there (external data), so a model
    larger than protobuf's 2 GiB limit is never held as one message.
    """

    def __init__(self, seed: int, data_file=None, location: str = ""):
        self.rng = np.random.default_rng(seed)
        self.data_file = data_file
        self.location = location
        self.offset = 0
        self.tensors: list[TensorProto] = []

    def add(self, name: str, array: np.ndarray) -> str:
        array = np.ascontiguousarray(array)
        if self.data_file is None or array.nbytes < 1024:
            self.tensors.append(numpy_helper.from_array(array, name))
            return name
        tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", str(self.offset)),
                           ("length", str(array.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self.data_file.write(array.tobytes())
        self.offset += array.nbytes
        self.tensors.append(tensor)
        return name

    def normal(self, name: str, shape: tuple[int, ...], scale: float) -> str:
        array = self.rng.standard_normal(shape, dtype=np.float32)
        array *= np.float32(scale)
        return self.add(name, array)

    def near_one(self, name: str, size: int) -> str:
        return self.add(name, (1.0 + 0.1 * self.rng.standard_normal(size, dtype=np.float32)).astype(np.float32))


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []

    def __call__(self, op: str, inputs: list[str], name: str, n_outputs: int = 1, **attrs) -> str | list[str]:
        outputs = [f"{name}:{i}" for i in range(n_outputs)] if n_outputs > 1 else [name]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs if n_outputs > 1 else outputs[0]


def _graph(w: _Weights, *, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int,
           rope_theta: float, eps: float) -> tuple[list, list, list]:
    head_dim = hidden // heads
    groups = heads // kv_heads
    n = _Graph()
    c = lambda name, value, dtype=np.int64: w.add(f"const.{name}", np.array(value, dtype=dtype))  # noqa: E731

    inputs = [helper.make_tensor_value_info("input_ids", INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("position_ids", INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", INT64, ["batch", "total_seq"])]
    outputs = [helper.make_tensor_value_info("logits", FLOAT, ["batch", "seq", vocab])]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", FLOAT,
                                                        ["batch", kv_heads, "past_seq", head_dim]))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", FLOAT,
                                                         ["batch", kv_heads, "total_seq", head_dim]))

    # --- shared: rotary cos/sin [batch, seq, 1, head_dim] and the additive-free mask --------
    inv_freq = (1.0 / rope_theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)).astype(np.float32)
    inv_freq = w.add("rope.inv_freq", inv_freq.reshape(1, 1, head_dim // 2))
    axis_last = c("axes_last", [-1])
    axis_2 = c("axes_2", [2])
    pos = n("Unsqueeze", [n("Cast", ["position_ids"], "rope.pos_f", to=TensorProto.FLOAT), axis_last], "rope.pos")
    freqs = n("Mul", [pos, inv_freq], "rope.freqs")  # [batch, seq, head_dim/2]
    freqs = n("Concat", [freqs, freqs], "rope.freqs2", axis=-1)
    cos = n("Unsqueeze", [n("Cos", [freqs], "rope.cos0"), axis_2], "rope.cos")
    sin = n("Unsqueeze", [n("Sin", [freqs], "rope.sin0"), axis_2], "rope.sin")
    half_split = c("rope.split", [head_dim // 2, head_dim // 2])

    zero, one = c("zero", 0), c("one", 1)
    ids_shape = n("Shape", ["input_ids"], "mask.ids_shape")
    seq_len = n("Gather", [ids_shape, one], "mask.seq_len", axis=0)
    total_len = n("Gather", [n("Shape", ["attention_mask"], "mask.mask_shape"), one], "mask.total_len", axis=0)
    past_len = n("Sub", [total_len, seq_len], "mask.past_len")
    key_index = n("Unsqueeze", [n("Range", [zero, total_len, one], "mask.key_range"), c("axes_0", [0])],
                  "mask.key_index")  # [1, total]
    query_index = n("Unsqueeze", [n("Add", [n("Range", [zero, seq_len, one], "mask.query_range"), past_len],
                                    "mask.query_pos"), axis_last], "mask.query_index")  # [seq, 1]
    causal = n("LessOrEqual", [key_index, query_index], "mask.causal")  # [seq, total]
    causal = n("Tile", [causal, c("mask.tile", [groups, 1])], "mask.causal_groups")  # rows (group, seq)
    padding = n("Unsqueeze", [n("Cast", ["attention_mask"], "mask.pad_bool", to=TensorProto.BOOL),
                              c("axes_12", [1, 2])], "mask.padding")  # [batch, 1, 1, total]
    allowed = n("And", [causal, padding], "mask.allowed")  # [batch, 1, groups*seq, total]
    neg = w.add("const.neg_inf", np.array(NEG_INF, dtype=np.float32))
    eps_c = w.add("const.eps", np.array(eps, dtype=np.float32))
    scale = w.add("const.attn_scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    split_heads = c("shape.heads", [0, 0, heads, head_dim])
    split_kv = c("shape.kv_heads", [0, 0, kv_heads, head_dim])
    q_split = c("shape.q_split", [0, 0, kv_heads, groups, head_dim])
    q_grouped = c("shape.q_grouped", [0, kv_heads, -1, head_dim])
    ctx_ungroup = c("shape.ctx_ungroup", [0, kv_heads, groups, -1, head_dim])
    merge = c("shape.merge", [0, 0, hidden])
    qkv_split = c("split.qkv", [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim])
    mlp_split = c("split.mlp", [intermediate, intermediate])

    def rms_norm(x: str, name: str) -> str:
        weight = w.near_one(f"{name}.weight", hidden)
        mean = n("ReduceMean", [n("Mul", [x, x], f"{name}.square"), axis_last], f"{name}.mean", keepdims=1)
        rms = n("Sqrt", [n("Add", [mean, eps_c], f"{name}.add_eps")], f"{name}.rms")
        return n("Mul", [n("Div", [x, rms], f"{name}.normalize"), weight], f"{name}.scale")

    def rotary(x: str, name: str) -> str:  # x [batch, seq, n_heads, head_dim]
        x1, x2 = n("Split", [x, half_split], f"{name}.split", n_outputs=2, axis=-1)
        rotated = n("Concat", [n("Neg", [x2], f"{name}.neg"), x1], f"{name}.rotate_half", axis=-1)
        return n("Add", [n("Mul", [x, cos], f"{name}.cos"), n("Mul", [rotated, sin], f"{name}.sin")], f"{name}.out")

    def linear(x: str, name: str, k: int, nout: int, scale_: float | None = None) -> str:
        weight = w.normal(f"{name}.weight", (k, nout), scale_ if scale_ is not None else 1.0 / math.sqrt(k))
        return n("MatMul", [x, weight], f"{name}.matmul")

    embed = w.normal("embed_tokens.weight", (vocab, hidden), 1.0)
    x = n("Gather", [embed, "input_ids"], "embed_tokens", axis=0)
    residual_scale = 1.0 / math.sqrt(2 * layers)  # keeps the residual stream O(1) with random weights
    for i in range(layers):
        p = f"layers.{i}"
        h = rms_norm(x, f"{p}.input_norm")
        q, k, v = n("Split", [linear(h, f"{p}.attn.qkv", hidden, (heads + 2 * kv_heads) * head_dim), qkv_split],
                    f"{p}.attn.qkv_split", n_outputs=3, axis=-1)
        q = rotary(n("Reshape", [q, split_heads], f"{p}.attn.q_heads"), f"{p}.attn.q_rope")
        k = rotary(n("Reshape", [k, split_kv], f"{p}.attn.k_heads"), f"{p}.attn.k_rope")
        v = n("Reshape", [v, split_kv], f"{p}.attn.v_heads")
        k = n("Transpose", [k], f"{p}.attn.k_t", perm=[0, 2, 1, 3])  # [batch, kv, seq, hd]
        v = n("Transpose", [v], f"{p}.attn.v_t", perm=[0, 2, 1, 3])
        k_all = n("Concat", [f"past_key_values.{i}.key", k], f"present.{i}.key", axis=2)
        v_all = n("Concat", [f"past_key_values.{i}.value", v], f"present.{i}.value", axis=2)
        # queries grouped per KV head: [batch, seq, kv, groups, hd] -> [batch, kv, groups*seq, hd]
        q = n("Reshape", [q, q_split], f"{p}.attn.q5")
        q = n("Transpose", [q], f"{p}.attn.q_t", perm=[0, 2, 3, 1, 4])
        q = n("Reshape", [q, q_grouped], f"{p}.attn.q_grouped")
        k_t = n("Transpose", [k_all], f"{p}.attn.k_all_t", perm=[0, 1, 3, 2])
        scores = n("Mul", [n("MatMul", [q, k_t], f"{p}.attn.qk"), scale], f"{p}.attn.scores")
        scores = n("Where", [allowed, scores, neg], f"{p}.attn.masked")
        probs = n("Softmax", [scores], f"{p}.attn.softmax", axis=-1)
        ctx = n("MatMul", [probs, v_all], f"{p}.attn.pv")  # [batch, kv, groups*seq, hd]
        ctx = n("Reshape", [ctx, ctx_ungroup], f"{p}.attn.ctx5")
        ctx = n("Transpose", [ctx], f"{p}.attn.ctx_t", perm=[0, 3, 1, 2, 4])  # [batch, seq, kv, groups, hd]
        ctx = n("Reshape", [ctx, merge], f"{p}.attn.merge")
        attn = linear(ctx, f"{p}.attn.o", hidden, hidden, residual_scale / math.sqrt(hidden))
        x = n("Add", [x, attn], f"{p}.attn.residual")
        h = rms_norm(x, f"{p}.post_norm")
        gate, up = n("Split", [linear(h, f"{p}.mlp.gate_up", hidden, 2 * intermediate), mlp_split],
                     f"{p}.mlp.split", n_outputs=2, axis=-1)
        act = n("Mul", [n("Mul", [gate, n("Sigmoid", [gate], f"{p}.mlp.sigmoid")], f"{p}.mlp.silu"), up],
                f"{p}.mlp.swiglu")
        x = n("Add", [x, linear(act, f"{p}.mlp.down", intermediate, hidden,
                                residual_scale / math.sqrt(intermediate))], f"{p}.mlp.residual")
    x = rms_norm(x, "final_norm")
    head = w.normal("lm_head.weight", (hidden, vocab), 1.0 / math.sqrt(hidden))
    n.nodes.append(helper.make_node("MatMul", [x, head], ["logits"], name="lm_head"))
    return n.nodes, inputs, outputs


def _proto(nodes, inputs, outputs, tensors, *, name: str, config: dict, seed: int) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, tensors)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="portarun.models",
                              doc_string=f"portarun built-in Llama-style decoder {json.dumps(config)}, seed {seed}")
    proto.ir_version = IR_FOR_OPSET[OPSET]
    helper.set_model_props(proto, {"portarun.decoder": json.dumps(config, sort_keys=True)})
    return proto


def build(*, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
          intermediate: int = 128, vocab: int = 256, rope_theta: float = 10000.0, eps: float = 1e-5,
          name: str = "decoder", cache: str | os.PathLike | None = None) -> Model:
    """Build a decoder. Large ones (over ``STREAM_BYTES``) are written to ``cache`` (default: the
    portarun cache) with external data on first use, and loaded from there afterwards."""
    if hidden % heads or heads % kv_heads or (hidden // heads) % 2:
        raise ValueError(f"decoder needs hidden % heads == 0, heads % kv_heads == 0 and an even head_dim "
                         f"(hidden {hidden}, heads {heads}, kv_heads {kv_heads})")
    config = dict(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, head_dim=hidden // heads,
                  intermediate=intermediate, vocab=vocab, rope_theta=rope_theta, eps=eps)
    dims = dict(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, intermediate=intermediate, vocab=vocab)
    if 4 * parameter_count(**dims) <= STREAM_BYTES:
        weights = _Weights(seed)
        nodes, ins, outs = _graph(weights, rope_theta=rope_theta, eps=eps, **dims)
        proto = _proto(nodes, ins, outs, weights.tensors, name=name, config=config, seed=seed)
        return Model.from_proto(proto, name=name)
    path, fresh = _cached_large(name, config, seed, dims, rope_theta, eps, cache)
    # Checked when written; a cached copy (keyed by config and seed) is trusted: checking 4 GB of
    # weights again costs a minute and a second copy of them in memory.
    return Model.load(path, check=fresh)


def _cached_large(name: str, config: dict, seed: int, dims: dict, rope_theta: float, eps: float,
                  cache: str | os.PathLike | None) -> tuple[Path, bool]:
    from .._cache import cache_dir

    key = hashlib.sha256(json.dumps({**config, "seed": seed, "opset": OPSET, "v": 1}, sort_keys=True).encode())
    folder = Path(cache) if cache is not None else cache_dir() / "decoders"
    target = folder / f"{name}-{key.hexdigest()[:12]}" / f"{name}.onnx"
    if target.exists() and (target.parent / f"{name}.onnx.data").exists():
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    # Stage in a temporary folder, then move the data file and the model into place (model last),
    # so an interrupted build never leaves a model pointing at a half-written data file.
    staging = target.parent / f".staging-{os.getpid()}"
    staging.mkdir(exist_ok=True)
    try:
        with open(staging / f"{name}.onnx.data", "wb") as data:
            weights = _Weights(seed, data, f"{name}.onnx.data")
            nodes, ins, outs = _graph(weights, rope_theta=rope_theta, eps=eps, **dims)
        proto = _proto(nodes, ins, outs, weights.tensors, name=name, config=config, seed=seed)
        onnx.save_model(proto, str(staging / f"{name}.onnx"))
        os.replace(staging / f"{name}.onnx.data", target.parent / f"{name}.onnx.data")
        os.replace(staging / f"{name}.onnx", target)
    finally:
        for leftover in staging.glob("*"):
            leftover.unlink()
        staging.rmdir()
    return target, True
