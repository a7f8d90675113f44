"""A seeded mutation fuzzer: malformed models must give a PortarunError, never a leak, a kill or a hang.

Seeds are the built-in MLP and CNN and small graphs with If, Loop, Gather, external data and a
model-local function. A mutant applies one to three mutations chosen by a seeded RNG: byte-level
(flip, truncate, insert, duplicate or zero a slice of the serialized file) or protobuf-level
(dims, element types, op types, attributes, node inputs, initializer dims/bytes/values, external
data entries, opset and IR versions, Tile/Pad/Loop constants). Each (mutant, target) case runs in a
reusable worker process with a memory limit and a timeout (``portarun.worker.IsolatedWorker``):
``load`` → ``compile`` → ``random_feeds`` → ``run``. Outcomes:

- ``ok``: it ran; ``error``: a PortarunError (the expected refusal); ``leak``: any other exception
  escaped portarun (the stage says where); ``killed``: the worker died (signal, abort, exit);
  ``timeout``: no answer within the limit.
"""

from __future__ import annotations

import collections
import os
import queue
import random
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUTCOMES = ("ok", "error", "leak", "killed", "timeout")
OPSET = 17
WEIRD_INTS = (-(2**63), -5, -1, 0, 1, 3, 7, 1000, 10**6, 10**12, 2**31, 2**63 - 1)


# -- seeds ------------------------------------------------------------------------------------
def _model(nodes, inputs, outputs, initializers=(), functions=(), opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), *opsets],
                             functions=list(functions))


def _vi(name, elem=TensorProto.FLOAT, shape=("batch", 4)):
    return helper.make_tensor_value_info(name, elem, list(shape) if shape is not None else None)


def seeds() -> dict[str, tuple[onnx.ModelProto, dict[str, bytes]]]:
    """name -> (model, files beside it)."""
    from portarun import models

    out: dict[str, tuple[onnx.ModelProto, dict[str, bytes]]] = {
        "mlp": (models.build("mlp").proto, {}), "cnn": (models.build("cnn").proto, {})}
    branch = lambda op, name: helper.make_graph([helper.make_node(op, ["x"], ["b"])], name, [],  # noqa: E731
                                                [_vi("b")])
    out["if"] = (_model([helper.make_node("If", ["c"], ["y"], then_branch=branch("Relu", "then"),
                                          else_branch=branch("Neg", "else"))],
                        [_vi("c", TensorProto.BOOL, ()), _vi("x")], [_vi("y")]), {})
    body = helper.make_graph([helper.make_node("Identity", ["cond"], ["cond_out"]),
                              helper.make_node("Add", ["acc", "one"], ["acc_out"])], "body",
                             [_vi("i", TensorProto.INT64, ()), _vi("cond", TensorProto.BOOL, ()),
                              _vi("acc", TensorProto.FLOAT, (4,))],
                             [_vi("cond_out", TensorProto.BOOL, ()), _vi("acc_out", TensorProto.FLOAT, (4,))],
                             [numpy_helper.from_array(np.ones(4, np.float32), "one")])
    out["loop"] = (_model([helper.make_node("Loop", ["m", "c", "a"], ["y"], body=body)],
                          [_vi("a", shape=(4,))], [_vi("y", shape=(4,))],
                          [numpy_helper.from_array(np.array(3, np.int64), "m"),
                           numpy_helper.from_array(np.array(True), "c")]), {})
    out["gather"] = (_model([helper.make_node("Gather", ["d", "i"], ["g"], axis=0),
                             helper.make_node("Tile", ["g", "r"], ["y"])],
                            [_vi("i", TensorProto.INT64, ("n",))], [_vi("y", shape=("n2", 8))],
                            [numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "d"),
                             numpy_helper.from_array(np.array([2, 2], np.int64), "r")]), {})
    weight = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "w")
    raw = weight.raw_data
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(len(raw)))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    out["external"] = (_model([helper.make_node("MatMul", ["x", "w"], ["m"]),
                               helper.make_node("Pad", ["m", "p"], ["y"])],
                              [_vi("x")], [_vi("y", shape=("b2", 6))],
                              [weight, numpy_helper.from_array(np.array([0, 1, 0, 1], np.int64), "p")]),
                       {"w.bin": raw})
    function = helper.make_function("local", "AddRelu", ["a", "b"], ["c"],
                                    [helper.make_node("Add", ["a", "b"], ["s"]),
                                     helper.make_node("Relu", ["s"], ["c"])], [helper.make_opsetid("", OPSET)])
    out["function"] = (_model([helper.make_node("AddRelu", ["x", "x"], ["h"], domain="local"),
                               helper.make_node("AddRelu", ["h", "x"], ["y"], domain="local")],
                              [_vi("x")], [_vi("y")], functions=[function],
                              opsets=[helper.make_opsetid("local", 1)]), {})
    return out


# -- mutations --------------------------------------------------------------------------------
def _values(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    graph = model.graph
    return [v for v in list(graph.input) + list(graph.output) + list(graph.value_info)
            if v.type.HasField("tensor_type")]


def _nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    nodes, stack = [], [model.graph]
    stack += [f for f in model.functions]
    while stack:
        body = stack.pop()
        for node in body.node:
            nodes.append(node)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    stack.append(attr.g)
    return nodes


def _tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    tensors = list(model.graph.initializer)
    for node in _nodes(model):
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                tensors.append(attr.t)
            elif attr.type == onnx.AttributeProto.GRAPH:
                tensors += list(attr.g.initializer)
    return tensors


def m_dim(model, rng):
    values = [v for v in _values(model) if v.type.tensor_type.HasField("shape") and v.type.tensor_type.shape.dim]
    if values:
        dim = rng.choice(list(rng.choice(values).type.tensor_type.shape.dim))
        if rng.random() < 0.8:
            dim.dim_value = rng.choice(WEIRD_INTS[1:])
        else:
            dim.dim_param = rng.choice(["", "batch", "é", "x" * 300])


def m_elem_type(model, rng):
    values = _values(model)
    if values:
        rng.choice(values).type.tensor_type.elem_type = rng.choice([0, 2, 3, 6, 7, 8, 9, 10, 11, 16, 21, 23, 999])


def m_op_type(model, rng):
    nodes = _nodes(model)
    if nodes:
        rng.choice(nodes).op_type = rng.choice(["Add", "Relu", "Sum", "Tile", "Pad", "Gather", "Reshape", "Concat",
                                                "MatMul", "If", "Loop", "NoSuchOp", "Expand", "Cast"])


def m_attribute(model, rng):
    nodes = [n for n in _nodes(model) if n.attribute]
    if nodes and rng.random() < 0.7:
        attr = rng.choice(list(rng.choice(nodes).attribute))
        if attr.type == onnx.AttributeProto.INT:
            attr.i = rng.choice(WEIRD_INTS)
        elif attr.type == onnx.AttributeProto.INTS and attr.ints:
            attr.ints[rng.randrange(len(attr.ints))] = rng.choice(WEIRD_INTS)
        elif attr.type == onnx.AttributeProto.FLOAT:
            attr.f = rng.choice([float("nan"), float("inf"), -1e38, 0.0])
        else:
            attr.type = rng.choice([1, 2, 3, 7, 99])
    elif _nodes(model):
        node = rng.choice(_nodes(model))
        node.attribute.append(helper.make_attribute(rng.choice(["axis", "perm", "mode", "bogus"]),
                                                    rng.choice([rng.choice(WEIRD_INTS), [1, -7], "x"])))


def m_inputs(model, rng):
    nodes = _nodes(model)
    if not nodes:
        return
    node = rng.choice(nodes)
    choice = rng.random()
    if choice < 0.3 and node.input:
        del node.input[rng.randrange(len(node.input))]
    elif choice < 0.5 and node.input:
        node.input[rng.randrange(len(node.input))] = rng.choice(["", "nowhere", node.output[0] if node.output else ""])
    elif choice < 0.8:
        node.input.append(rng.choice(list(node.input) or ["x"]))
    else:  # an absurdly wide variadic node
        node.op_type = "Sum"
        first = node.input[0] if node.input else "x"
        del node.input[:]
        node.input.extend([first] * rng.choice([3, 300, 30000]))


def m_structure(model, rng):
    nodes = model.graph.node
    if not nodes:
        return
    choice = rng.random()
    if choice < 0.4:
        del nodes[rng.randrange(len(nodes))]
    elif choice < 0.7:
        nodes.append(nodes[rng.randrange(len(nodes))])  # a second producer of the same name
    else:
        items = list(nodes)
        rng.shuffle(items)
        del nodes[:]
        nodes.extend(items)


def m_tensor(model, rng):
    tensors = _tensors(model)
    if not tensors:
        return
    tensor = rng.choice(tensors)
    choice = rng.random()
    if choice < 0.25 and tensor.dims:
        tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice(WEIRD_INTS)
    elif choice < 0.4:
        tensor.data_type = rng.choice([0, 1, 2, 6, 7, 9, 10, 11, 16, 21, 999])
    elif choice < 0.6 and tensor.raw_data:
        raw = bytearray(tensor.raw_data)
        tensor.raw_data = bytes(raw[: rng.randrange(len(raw) + 1)]) if rng.random() < 0.5 else bytes(raw) * 2
    elif tensor.data_type == TensorProto.INT64 and tensor.raw_data:
        # shape-like constants (Tile repeats, Pad pads, Loop trip counts) set to extremes
        values = np.frombuffer(tensor.raw_data, np.int64).copy()
        values[rng.randrange(len(values))] = rng.choice(WEIRD_INTS)
        tensor.raw_data = values.tobytes()
    elif tensor.data_type == TensorProto.FLOAT and tensor.raw_data:
        values = np.frombuffer(tensor.raw_data, np.float32).copy()
        values[rng.randrange(len(values))] = rng.choice([np.nan, np.inf, -np.inf, 3e38])
        tensor.raw_data = values.tobytes()


def m_external(model, rng):
    tensors = _tensors(model)
    if not tensors:
        return
    tensor = rng.choice(tensors)
    if tensor.data_location != TensorProto.EXTERNAL and rng.random() < 0.5:
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
    entries = {e.key: e for e in tensor.external_data}
    key = rng.choice(["location", "offset", "length", "checksum"])
    value = rng.choice({"location": ["w.bin", "/etc/passwd", "../w.bin", "a" * 300, "w\x00.bin", "loop", "", "nope"],
                        "offset": ["abc", "-1", "99999999999", "3", ""],
                        "length": ["abc", "-4", "99999999999", "0", "64"],
                        "checksum": ["x"]}[key])
    if key in entries:
        entries[key].value = value
    else:
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def m_versions(model, rng):
    if rng.random() < 0.5 and model.opset_import:
        model.opset_import[0].version = rng.choice([1, 6, 11, 13, 18, 21, 23, 99, 10**6])
    else:
        model.ir_version = rng.choice([0, 1, 3, 7, 10, 11, 99])


UNARY = ("Relu", "Neg", "Exp", "Log", "Sqrt", "Sigmoid", "Tanh", "Abs", "Reciprocal", "Floor", "Identity", "Softplus")


def m_unary(model, rng):
    """Swap a one-input op for another: the graph stays valid, the numbers go anywhere (NaN, inf)."""
    nodes = [n for n in model.graph.node if n.op_type in UNARY]
    if nodes:
        rng.choice(nodes).op_type = rng.choice(UNARY)


def m_wide(model, rng):
    """Replace a node by a Sum of its first input many times over (valid, and hard on compilers)."""
    nodes = [n for n in model.graph.node if n.input and n.input[0] and len(n.output) == 1]
    if nodes:
        node = rng.choice(nodes)
        first = node.input[0]
        node.op_type, node.domain = "Sum", ""
        del node.attribute[:]
        del node.input[:]
        node.input.extend([first] * rng.choice([2, 64, 3000, 30000]))


def m_chain(model, rng):
    """Insert a chain of unary nodes after the first input (a long one stresses compile times)."""
    graph = model.graph
    if not graph.input:
        return
    source = graph.input[-1].name
    # 20,000 is refused by the guards (Identity); 1,500 Sigmoids compile ~20 s on XLA: a CI timeout, not a bug
    length = rng.choice([2, 50, 300, 20000])
    op = rng.choice(UNARY) if length < 20000 else "Identity"  # 20,000 chained Relu: hours on OpenVINO
    names = [f"{source}__c{i}" for i in range(length)]
    chain = [helper.make_node(op, [source if i == 0 else names[i - 1]], [names[i]]) for i in range(length)]
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == source:
                node.input[index] = names[-1]
    nodes = chain + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def relax_shapes(model: onnx.ModelProto) -> None:
    """Forget declared output and intermediate shapes, so a mutated graph is judged by what it computes."""
    del model.graph.value_info[:]
    for index, output in enumerate(model.graph.output):
        if output.type.HasField("tensor_type") and output.type.tensor_type.HasField("shape"):
            for axis, dim in enumerate(output.type.tensor_type.shape.dim):
                dim.dim_param = f"out{index}_{axis}"  # a fresh name matches whatever size comes out


PROTO_MUTATIONS: tuple[Callable, ...] = (m_dim, m_elem_type, m_op_type, m_attribute, m_inputs, m_structure,
                                         m_tensor, m_external, m_versions, m_unary, m_wide, m_chain, m_tensor,
                                         m_unary)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    raw = bytearray(data)
    if not raw:
        return bytes(raw)
    choice = rng.random()
    if choice < 0.4:
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    elif choice < 0.55:
        raw = raw[: rng.randrange(len(raw))]
    elif choice < 0.7:
        at = rng.randrange(len(raw))
        raw[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    elif choice < 0.85:
        start = rng.randrange(len(raw))
        end = min(len(raw), start + rng.randint(1, 256))
        raw[end:end] = raw[start:end]
    else:
        start = rng.randrange(len(raw))
        raw[start:start + rng.randint(1, 64)] = bytes(min(64, len(raw) - start))
    return bytes(raw)


@dataclass
class Mutant:
    index: int
    seed_name: str
    mutations: list[str]
    data: bytes
    files: dict[str, bytes]


def mutants(count: int, seed: int = 0) -> list[Mutant]:
    """``count`` mutants, the same ones for the same ``seed``."""
    pool = seeds()
    names = sorted(pool)
    made = []
    for index in range(count):
        rng = random.Random(seed * 1_000_003 + index)
        name = names[index % len(names)]
        model = onnx.ModelProto()
        model.CopyFrom(pool[name][0])
        applied = []
        for _ in range(rng.randint(1, 3)):
            mutation = rng.choice(PROTO_MUTATIONS)
            try:
                mutation(model, rng)
            except (ValueError, TypeError, IndexError):  # protobuf refused the edit itself
                continue
            applied.append(mutation.__name__[2:])
        if rng.random() < 0.6:
            relax_shapes(model)
            applied.append("relax")
        try:
            data = model.SerializeToString()
        except Exception:
            data = pool[name][0].SerializeToString()
            applied = []
        if rng.random() < 0.25:
            data = mutate_bytes(data, rng)
            applied.append("bytes")
        made.append(Mutant(index, name, applied, data, dict(pool[name][1])))
    return made


# -- one case, inside a worker ----------------------------------------------------------------
def run_case(data: bytes, files: dict[str, bytes], target: str) -> dict[str, Any]:
    """load -> compile -> feeds -> run; which stage ended it and how. Runs in a worker process."""
    import portarun
    from portarun.errors import PortarunError

    stage = "load"
    with tempfile.TemporaryDirectory(prefix="portarun-fuzz-") as folder:
        base = Path(folder)
        for name, content in files.items():
            (base / name).write_bytes(content)
        try:
            os.symlink(base / "loop", base / "loop")
        except OSError:
            pass
        path = base / "model.onnx"
        path.write_bytes(data)
        try:
            model = portarun.load(path)
            stage = "compile"
            with portarun.compile(model, target) as exe:
                stage = "feeds"
                feeds = portarun.random_feeds(exe.inputs, seed=0)
                stage = "run"
                exe.run(feeds)
        except PortarunError as exc:
            return {"outcome": "error", "stage": stage, "type": type(exc).__name__, "message": _first(exc)}
        except BaseException as exc:  # noqa: BLE001 - a leak is what this looks for
            return {"outcome": "leak", "stage": stage, "type": type(exc).__name__, "message": _first(exc)}
    return {"outcome": "ok", "stage": "done", "type": "", "message": ""}


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _quiet_worker() -> None:
    """Silence SDK chatter on the worker's stderr (its own fd 2), kept for the whole worker's life."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


# -- many cases, a pool of workers ------------------------------------------------------------
@dataclass
class FuzzReport:
    targets: list[str]
    counts: dict[str, collections.Counter] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)  # every leak, kill and timeout
    restarts: int = 0

    def table(self) -> str:
        lines = [f"{'target':<18}" + "".join(f"{o:>9}" for o in OUTCOMES) + f"{'total':>8}"]
        for target in self.targets:
            counts = self.counts.get(target, collections.Counter())
            lines.append(f"{target:<18}" + "".join(f"{counts[o]:>9}" for o in OUTCOMES)
                         + f"{sum(counts.values()):>8}")
        return "\n".join(lines)

    def bad(self, *, exclude_stages: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        return [f for f in self.findings if f["stage"] not in exclude_stages]


def fuzz(count: int, targets: list[str], *, seed: int = 0, workers: int = 2, timeout_s: float = 30.0,
         memory_mb: int = 4096, progress: Callable[[int, int], None] | None = None) -> FuzzReport:
    """Run ``count`` mutants on every target in a pool of ``workers`` reusable worker processes."""
    from portarun.worker import IsolatedWorker

    report = FuzzReport(list(targets), {t: collections.Counter() for t in targets})
    jobs: queue.Queue = queue.Queue()
    for mutant in mutants(count, seed):
        for target in targets:
            jobs.put((mutant, target))
    total = jobs.qsize()
    lock = threading.Lock()
    done = [0]

    def drive() -> None:
        worker = IsolatedWorker(memory_limit=memory_mb * 2**20, name="portarun-fuzz-worker")
        try:
            while True:
                try:
                    mutant, target = jobs.get_nowait()
                except queue.Empty:
                    return
                if not worker.alive:
                    worker.call(_quiet_worker, timeout_s=120)
                outcome = worker.call(run_case, mutant.data, mutant.files, target, timeout_s=timeout_s)
                if outcome.status == "ok":
                    result = outcome.value
                elif outcome.status in ("crash", "timeout"):
                    result = {"outcome": "killed" if outcome.status == "crash" else "timeout", "stage": "?",
                              "type": "", "message": outcome.message}
                else:  # the worker machinery itself failed: count it as a leak, it must not happen
                    result = {"outcome": "leak", "stage": "worker", "type": "", "message": outcome.message[:300]}
                with lock:
                    report.counts[target][result["outcome"]] += 1
                    if result["outcome"] in ("leak", "killed", "timeout"):
                        report.findings.append({"mutant": mutant.index, "seed": mutant.seed_name,
                                                "mutations": mutant.mutations, "target": target, **result})
                    done[0] += 1
                    if progress is not None:
                        progress(done[0], total)
        finally:
            with lock:
                report.restarts += worker.restarts
            worker.close()

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return report


__all__ = ["FuzzReport", "Mutant", "OUTCOMES", "fuzz", "mutants", "run_case", "seeds"]
