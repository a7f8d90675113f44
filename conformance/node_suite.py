"""The ONNX backend node tests, run against any portarun target.

The installed onnx wheel ships the test generators but no data, so the cases
are generated from ``onnx.backend.test.case.node.collect_testcases()`` (about
5 s, kept in memory for the process). Each case is one small model, its inputs
and the expected outputs computed by onnx's NumPy reference.

    from portarun_conformance.node_suite import load_node_cases, run_node_suite
    result = run_node_suite("xla:cpu", load_node_cases(["Add", "Gemm"]))
    print(result.counts, result.per_op()["Gemm"])

Every target is driven through ``portarun.compile``/``run`` like a user would;
feed checking is off (node tests feed sequences, optionals and tensors whose
declared shapes are looser than the data). Quantized cases are compiled at the
precision the model carries (``int8``, ``int4-weight``...), everything else at fp32.
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import onnx
import onnx.numpy_helper

import portarun
from portarun import Model, PortarunError
from portarun.plugin import first_line, quantization_of

STATUSES = ("pass", "fail", "error", "skip")
SAMPLE_PER_OP = 2  # cases per op type in the default (sample) node suite


@dataclass
class NodeCase:
    name: str
    op_type: str
    model: onnx.ModelProto
    inputs: list[Any]
    outputs: list[Any]
    rtol: float = 1e-3
    atol: float = 1e-7

    @property
    def input_names(self) -> list[str]:
        initializers = {t.name for t in self.model.graph.initializer}
        return [vi.name for vi in self.model.graph.input if vi.name not in initializers]

    def feeds(self) -> dict[str, Any]:
        return dict(zip(self.input_names, self.inputs))


@dataclass
class NodeCaseResult:
    name: str
    op_type: str
    status: str  # pass | fail | error | skip
    reason: str = ""
    seconds: float = 0.0


@dataclass
class NodeSuiteResult:
    target: str
    results: list[NodeCaseResult] = field(default_factory=list)
    rtol: float = 1e-3
    atol: float = 1e-5
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(r.status for r in self.results)
        return {status: counted.get(status, 0) for status in STATUSES} | {"total": len(self.results)}

    @property
    def passed(self) -> int:
        return self.counts["pass"]

    def per_op(self) -> dict[str, dict[str, int]]:
        table: dict[str, Counter] = {}
        for r in self.results:
            table.setdefault(r.op_type, Counter())[r.status] += 1
        return {op: {s: c.get(s, 0) for s in STATUSES} for op, c in sorted(table.items())}

    def by_status(self, status: str) -> list[NodeCaseResult]:
        return [r for r in self.results if r.status == status]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "rtol": self.rtol, "atol": self.atol, "seconds": round(self.seconds, 2),
                "counts": self.counts, "per_op": self.per_op(),
                "cases": [vars(r) for r in self.results]}

    def __bool__(self) -> bool:
        return self.counts["fail"] == 0 and self.counts["error"] == 0


# -- loading ----------------------------------------------------------------------------

def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


@functools.lru_cache(maxsize=1)
def _op_names() -> list[tuple[str, str]]:
    names = {schema.name for schema in onnx.defs.get_all_schemas_with_history()}
    # longest snake name first so "reduce_sum_square" beats "reduce_sum"
    return sorted(((_snake(n), n) for n in names), key=lambda p: -len(p[0]))


def op_type_of(case_name: str, model: onnx.ModelProto) -> str:
    """The op a node case tests, from its name (``test_reduce_sum_keepdims`` -> ReduceSum)."""
    stem = case_name[5:] if case_name.startswith("test_") else case_name
    for snake, name in _op_names():
        if stem == snake or stem.startswith(snake + "_"):
            return name
    nodes = model.graph.node
    return nodes[0].op_type if nodes else "?"


def _cases_cache_path():
    """Generated cases, pickled under the portarun cache keyed by the onnx and NumPy versions that made them."""
    from portarun.plugin import cache_dir

    return cache_dir() / "conformance" / "node-cases" / f"onnx-{onnx.__version__}-numpy-{np.__version__}.pkl"


@functools.lru_cache(maxsize=1)
def _all_cases() -> tuple[NodeCase, ...]:
    """Every case, generated once per onnx/NumPy version (5 s of CPU) and then read from the cache (0.5 s)."""
    import pickle

    from portarun.plugin import atomic_write_bytes

    path = _cases_cache_path()
    try:
        return pickle.loads(path.read_bytes())  # written by _all_cases below, in portarun's own cache
    except Exception:  # absent, truncated or from another Python: generate again
        pass
    cases = _generate_cases()
    try:
        atomic_write_bytes(path, pickle.dumps(cases, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # a read-only cache, or a case pickle cannot hold, only costs time
        pass
    return cases


def _generate_cases() -> tuple[NodeCase, ...]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collected = collect_testcases(None)
    cases = []
    for test in collected:
        if not test.data_sets:
            continue
        inputs, outputs = test.data_sets[0]
        cases.append(NodeCase(name=test.name, op_type=op_type_of(test.name, test.model), model=test.model,
                              inputs=[_as_numpy(v) for v in inputs], outputs=[_as_numpy(v) for v in outputs],
                              rtol=float(getattr(test, "rtol", 1e-3) or 1e-3),
                              atol=float(getattr(test, "atol", 1e-7) or 1e-7)))
    return tuple(sorted(cases, key=lambda c: c.name))


def _as_numpy(value: Any) -> Any:
    """TensorProtos (used for bf16/fp8/int4 data) and NumPy scalars as arrays; others unchanged."""
    if isinstance(value, onnx.TensorProto):
        try:
            return onnx.numpy_helper.to_array(value)
        except Exception:  # an element type this numpy/ml_dtypes cannot hold
            return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, list):
        return [_as_numpy(v) for v in value]
    return value


def sample_cases(cases: Iterable[NodeCase], per_op: int = SAMPLE_PER_OP) -> list[NodeCase]:
    """A representative sample: every op type, at most ``per_op`` of its cases, spread evenly over its
    cases in name order (so ``test_add`` and ``test_add_uint8`` rather than two near-copies)."""
    by_op: dict[str, list[NodeCase]] = {}
    for case in cases:
        by_op.setdefault(case.op_type, []).append(case)
    chosen = []
    for group in by_op.values():
        step = max(1, len(group) // per_op)
        chosen += group[::step][:per_op]
    return sorted(chosen, key=lambda c: c.name)


def load_node_cases(op_types: Iterable[str] | None = None, names: Iterable[str] | None = None,
                    *, sample: bool = False) -> list[NodeCase]:
    """The node cases (all, or those testing ``op_types``, or named in ``names``; ``sample``: see
    ``sample_cases``)."""
    cases = list(_all_cases())
    if sample:
        cases = sample_cases(cases)
    if op_types is not None:
        wanted = set(op_types)
        cases = [c for c in cases if c.op_type in wanted]
    if names is not None:
        wanted_names = set(names)
        cases = [c for c in cases if c.name in wanted_names]
    return cases


# -- comparing -------------------------------------------------------------------------

def _unrepresentable(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            reason = _unrepresentable(item)
            if reason:
                return reason
        return None
    if isinstance(value, dict):
        return "map values"
    if not isinstance(value, np.ndarray):
        return f"a {type(value).__name__} value"
    return None


def compare_value(actual: Any, expected: Any, rtol: float, atol: float) -> str | None:
    """None when ``actual`` matches ``expected``, else what differs."""
    if expected is None:
        return None if actual is None or (isinstance(actual, list) and not actual) else "expected no value"
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            return f"expected a sequence, got {type(actual).__name__}"
        if len(actual) != len(expected):
            return f"sequence length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            diff = compare_value(a, e, rtol, atol)
            if diff:
                return f"[{i}] {diff}"
        return None
    expected = np.asarray(expected)
    if not isinstance(actual, np.ndarray):
        actual = np.asarray(actual)
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} != expected {expected.dtype}"
    if actual.shape != expected.shape:
        return f"shape {list(actual.shape)} != expected {list(expected.shape)}"
    if expected.dtype.kind in "OUS":
        return None if np.array_equal(actual, expected) else "string values differ"
    if expected.dtype.kind in "biu":
        bad = int(np.count_nonzero(actual != expected))
        return None if bad == 0 else f"{bad} of {expected.size} values differ"
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    close = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None
    err = np.abs(a - e)[~close]
    err = err[~np.isnan(err)]  # a NaN where a number was expected counts, but has no size
    return f"{int((~close).sum())} of {e.size} values off (max abs err {err.max() if err.size else float('nan'):.3g})"


# -- running ---------------------------------------------------------------------------

class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float | None):
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(_signum, _frame):
        raise _Timeout(f"took over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_case(case: NodeCase, target: str, *, rtol: float = 1e-3, atol: float = 1e-5,
             timeout_s: float | None = 60.0, options: dict[str, Any] | None = None) -> NodeCaseResult:
    start = time.perf_counter()
    rtol, atol = max(rtol, case.rtol), max(atol, case.atol)

    def result(status: str, reason: str = "") -> NodeCaseResult:
        return NodeCaseResult(case.name, case.op_type, status, reason, time.perf_counter() - start)

    for value in list(case.inputs) + list(case.outputs):
        reason = _unrepresentable(value)
        if reason:
            return result("skip", f"NumPy cannot represent the case's tensors: {reason}")
    try:
        with _deadline(timeout_s), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Model.from_proto(case.model, name=case.name, check=False)
            precision = quantization_of(model) or "fp32"
            with portarun.compile(model, target, precision, **(options or {})) as exe:
                outputs = exe.run(case.feeds(), check=False)
        names = [o.name for o in case.model.graph.output]
        for name, expected in zip(names, case.outputs):
            if name not in outputs:
                return result("fail", f"output '{name}' missing")
            diff = compare_value(outputs[name], expected, rtol, atol)
            if diff:
                return result("fail", f"output '{name}': {diff}")
        return result("pass")
    except _Timeout as exc:
        return result("error", f"timeout: {exc}")
    except portarun.UnsupportedError as exc:
        return result("error", f"unsupported: {exc}")
    except PortarunError as exc:
        return result("error", first_line(exc, 300))
    except Exception as exc:  # a backend bug must not stop the suite
        return result("error", f"{type(exc).__name__}: {first_line(exc, 300)}")


def run_node_suite(target: str, cases: Iterable[NodeCase] | None = None, rtol: float = 1e-3, atol: float = 1e-5,
                   timeout_s: float | None = 60.0, *, options: dict[str, Any] | None = None,
                   progress: Callable[[NodeCaseResult], None] | None = None) -> NodeSuiteResult:
    """Run ``cases`` (default: all) on ``target``; ``timeout_s`` bounds each case.

    ``options`` are passed to ``portarun.compile`` (backend-specific, e.g. ``{"jit": False}`` for xla).
    """
    suite = NodeSuiteResult(str(target), rtol=rtol, atol=atol)
    start = time.perf_counter()
    for case in (load_node_cases() if cases is None else cases):
        outcome = run_case(case, target, rtol=rtol, atol=atol, timeout_s=timeout_s, options=options)
        suite.results.append(outcome)
        if progress:
            progress(outcome)
    suite.seconds = time.perf_counter() - start
    return suite


__all__ = ["NodeCase", "NodeCaseResult", "NodeSuiteResult", "SAMPLE_PER_OP", "compare_value", "load_node_cases",
           "op_type_of", "run_case", "run_node_suite", "sample_cases"]
