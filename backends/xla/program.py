"""One ONNX model as a JAX program: weights on the device, a traced function, a compile cache.

- Initializers become device arrays once and are passed to the jitted function as
  arguments (not baked into each compiled program as constants). Small ones (shape
  vectors, scalars) stay numpy so shape arithmetic folds while tracing.
- Constant 2-D MatMul/Gemm weights are stored transposed, [N, K]: XLA then emits a
  plain dot instead of multiply+reduce at batch 1 on GPUs (DESIGN section 5).
- Compiled executables are cached per input-shape signature; an optional bucketing
  policy pads chosen symbolic dims to the next power of two and slices outputs.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portarun.plugin import CompileError, InputError, Precision, Tails, UsageError, host_tails, take_tail

from . import jaxenv
from .hostvalues import HostStrings, StringInputError, device_part, encode_strings, is_host_value, \
    string_vocabulary
from .narrowing import narrow_float
from .lower import Context, Graph, model_graph, run_graph, tensor_to_numpy

# Initializers with at most this many elements stay numpy constants (shape vectors,
# axes, scalars): they must be known while tracing for shapes to fold.
CONSTANT_LIMIT = 64

COMPUTE_DTYPES = {Precision.BF16: "bfloat16", Precision.FP16: "float16"}


def _bucket(size: int, policy: Any) -> int:
    if policy in ("pow2", True, "power_of_two"):
        return 1 << max(size - 1, 0).bit_length() if size > 0 else 0
    if isinstance(policy, (list, tuple)):
        for candidate in sorted(int(p) for p in policy):
            if candidate >= size:
                return candidate
        return size
    raise UsageError(f"xla: unknown bucketing policy {policy!r}",
                     hint="use 'pow2' or a list of sizes, e.g. bucket={'seq': 'pow2'}")


@dataclass
class Compiled:
    call: Any  # the compiled executable (or an eager runner)
    seconds: float
    eager: bool = False
    reason: str = ""


@dataclass
class Stats:
    compile_count: int = 0
    compile_seconds: float = 0.0
    signatures: list[str] = field(default_factory=list)
    eager: list[str] = field(default_factory=list)


class Program:
    """The lowered model for one device and precision; ``run`` compiles per shape signature."""

    def __init__(self, model, device, precision: Precision, options: dict[str, Any], graph: Graph | None = None):
        jax = jaxenv.jax_module()
        self.model = model
        self.device = device
        self.precision = precision
        self.options = options
        self.jit = bool(options.get("jit", True))
        self.bucket = dict(options.get("bucket") or {})
        self.weight_layout = str(options.get("weight_layout", "nk"))
        if self.weight_layout not in ("nk", "kn"):
            raise UsageError(f"xla: weight_layout must be 'nk' or 'kn', got {self.weight_layout!r}")
        from .quant.matmul import form_for

        try:  # the QMatMul form: native (else int8dot) on CPUs, direct elsewhere, unless the option names one
            self.quantized_matmul = form_for(str(options.get("quantized_matmul", "auto")), device.platform)
        except ValueError as exc:
            raise UsageError(f"xla:{device.platform}: {exc}", hint="quantized_matmul='auto' picks by device kind") from None
        proto = model.proto
        from .guards import check as guard

        guard(proto, model.name)  # graphs on which XLA would crash or run for minutes: refused first
        # ``graph``: the one XlaBackend._supports prepared for this compile (rewrites below change it)
        self.graph = graph if graph is not None else model_graph(proto)
        if self.graph.missing:
            raise CompileError(
                f"xla cannot lower '{model.name}': no lowering for op type(s) {', '.join(sorted(self.graph.missing))}",
                backend="xla", hint="run it on another backend (e.g. onnxruntime:cpu), or add the op(s) to "
                                    "backends/xla/ops/")
        self.compute_dtype = None
        if precision in COMPUTE_DTYPES:
            import jax.numpy as jnp

            self.compute_dtype = getattr(jnp, COMPUTE_DTYPES[precision])
        self.input_names = [spec.name for spec in model.inputs]
        self.output_names = list(self.graph.outputs)
        self.output_specs = {spec.name: spec for spec in model.outputs}
        self.input_specs = {spec.name: spec for spec in model.inputs}
        self.string_inputs = self._string_inputs()
        # output name -> host decoder (string labels, ZipMap dicts), recorded while tracing
        self.decoders: dict[str, Any] = {}
        self._traced = False
        feed_names = set(self.input_names)
        host_weights: dict[str, np.ndarray] = {}
        self.constants: dict[str, np.ndarray] = {}
        for name, tensor in self.graph.initializers.items():
            if name in feed_names:
                continue
            array = tensor_to_numpy(tensor)
            if self.compute_dtype is not None and array.dtype == np.float32:
                array = narrow_float(array, self.compute_dtype)
            if array.size <= CONSTANT_LIMIT or array.dtype == object:
                self.constants[name] = array
            else:
                host_weights[name] = array
        from .rewrite import rewrite

        self.rewrites = rewrite(self.graph, host_weights, self.constants, transpose=self.weight_layout == "nk",
                                quantized_matmul=self.quantized_matmul, pack_int4=device.platform == "cpu")
        with jaxenv.x64():
            self.weights = {name: _to_device(array, device) for name, array in host_weights.items()}
        self.weight_bytes = int(sum(a.nbytes for a in host_weights.values()))
        self._jitted = jax.jit(self._forward, static_argnames=("tails",))
        self._cache: dict[tuple, Compiled] = {}
        # programs that return only the tails a run asked for (portarun.tails), keyed by
        # (signature, tails); artifacts store only the full programs, so these compile on demand
        self._tail_cache: dict[tuple, Compiled] = {}
        self._lock = threading.Lock()
        self.stats = Stats()

    def _string_inputs(self) -> dict[str, list[str]]:
        """Graph inputs holding strings -> the vocabulary their codes index (see hostvalues)."""
        found = {}
        input_types = {vi.name: vi.type for vi in self.graph.proto.input}
        for name in self.input_names:
            proto_type = input_types.get(name)
            if proto_type is None or not proto_type.HasField("tensor_type") \
                    or proto_type.tensor_type.elem_type != 8:  # TensorProto.STRING
                continue
            try:
                vocabulary = string_vocabulary(self.graph, name)
            except StringInputError as exc:
                raise CompileError(f"xla cannot lower '{self.model.name}': {exc}", backend="xla",
                                   hint="run it on onnxruntime:cpu, or encode the strings before the model") from None
            found[name] = vocabulary
        return found

    # -- the traced function ------------------------------------------------------------
    def _context(self, eager: bool) -> Context:
        return Context(compute_dtype=self.compute_dtype, eager=eager)

    def _forward(self, weights: dict, inputs: tuple, eager: bool = False, tails: tuple = ()) -> tuple:
        """The graph as a JAX function. ``tails``: (output, axis, start) triples whose outputs are cut
        inside the program, so XLA folds slice(concat(past, new)) to ``new`` and never writes the past."""
        import jax.numpy as jnp

        cut = {name: (axis, start) for name, axis, start in tails}
        env: dict[str, Any] = dict(self.constants)
        env.update(weights)
        for name, value in zip(self.input_names, inputs):
            if self.compute_dtype is not None and value is not None and not isinstance(value, list) \
                    and value.dtype == jnp.float32:
                value = narrow_float(value, self.compute_dtype)
            env[name] = list(value) if isinstance(value, (list, tuple)) else value
            if name in self.string_inputs:
                env[name] = HostStrings(value, np.asarray(list(self.string_inputs[name]) + [None], dtype=object))
        outputs = run_graph(self.graph, env, self._context(eager))
        results = []
        for name, value in zip(self.output_names, outputs):
            if is_host_value(value):  # strings / ZipMap: codes leave the program, the host decodes
                self.decoders[name] = value.decode
                value = device_part(value)
            if isinstance(value, list):  # sequence outputs
                if name in cut:
                    raise UsageError(f"xla:{self.device.platform}: output '{name}' is a sequence, so it has no "
                                     "tail", hint="ask tails only of tensor outputs")
                results.append([jnp.asarray(v) for v in value])
                continue
            if value is None:  # an empty optional
                results.append(None)
                continue
            value = jnp.asarray(value)
            spec = self.output_specs.get(name)
            if self.compute_dtype is not None and spec is not None and spec.dtype == np.float32 \
                    and value.dtype != np.float32:
                value = value.astype(np.float32)
            if name in cut:
                value = take_tail(name, value, *cut[name], where=f"xla:{self.device.platform}")
            results.append(value)
        self._traced = True
        return tuple(results)

    # -- compile cache ------------------------------------------------------------------
    def signature(self, arrays: list[np.ndarray]) -> tuple:
        return tuple(_signature_of(a) for a in arrays)

    def compiled_for(self, arrays: list, tails: tuple = ()) -> Compiled:
        key = self.signature(arrays)
        cache, cache_key = (self._tail_cache, (key, tails)) if tails else (self._cache, key)
        entry = cache.get(cache_key)
        if entry is None:
            with self._lock:
                entry = cache.get(cache_key)
                if entry is None:
                    entry = self._compile(arrays, key, tails)
                    cache[cache_key] = entry
        return entry

    def _compile(self, arrays: list, key: tuple, tails: tuple = ()) -> Compiled:
        from .ops._common import DynamicShape

        start = time.perf_counter()
        text = ", ".join(f"{n}{list(k[0]) if k and isinstance(k[0], tuple) else k}"
                         for n, k in zip(self.input_names, key))
        if tails:
            text += "; tails " + ", ".join(f"{n}[axis {a} from {s}]" for n, a, s in tails)
        if self.jit:
            specs = tuple(_spec_of(a) for a in arrays)
            try:
                with jaxenv.x64():
                    compiled = self._jitted.lower(self.weights, specs, tails=tails).compile()
            except DynamicShape as exc:
                entry = Compiled(self._eager_runner(tails), time.perf_counter() - start, eager=True, reason=str(exc))
                self.stats.eager.append(f"{text}: {exc}")
            else:
                call = compiled
                if any(w.dtype.name in _SUB_BYTE for w in self.weights.values()):
                    # jaxlib 0.10 AOT executables demand packed 4-bit argument layouts that device
                    # arrays do not have; jit's own dispatch re-lays them out (compiles once more).
                    call = functools.partial(self._jitted, tails=tails) if tails else self._jitted
                entry = Compiled(call, time.perf_counter() - start)
                self.stats.compile_count += 1
                self.stats.compile_seconds += entry.seconds
        else:
            entry = Compiled(self._eager_runner(tails), 0.0, eager=True, reason="jit=False")
        self.stats.signatures.append(text)
        return entry

    def _eager_runner(self, tails: tuple = ()):
        def run(weights, inputs):
            return self._forward(weights, inputs, eager=True, tails=tails)

        return run

    # -- running ------------------------------------------------------------------------
    def _bucketed(self, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], dict[str, int]]:
        """Pad the bucketed symbolic dims; returns the arrays and the true size of each dim."""
        arrays = [feeds[name] for name in self.input_names]
        if not self.bucket:
            return arrays, {}
        true_sizes: dict[str, int] = {}
        padded = []
        for name, array in zip(self.input_names, arrays):
            spec = self.input_specs[name]
            width = []
            for axis, dim in enumerate(spec.shape or ()):
                if isinstance(dim, str) and dim in self.bucket:
                    size = array.shape[axis]
                    true_sizes[dim] = size
                    width.append((0, _bucket(size, self.bucket[dim]) - size))
                else:
                    width.append((0, 0))
            if any(w[1] for w in width):
                array = np.pad(array, width)
            padded.append(array)
        return padded, true_sizes

    def _unbucket(self, name: str, value: np.ndarray, true_sizes: dict[str, int]) -> np.ndarray:
        spec = self.output_specs.get(name)
        if not true_sizes or spec is None or spec.shape is None:
            return value
        index = tuple(slice(0, true_sizes[d]) if isinstance(d, str) and d in true_sizes else slice(None)
                      for d in spec.shape)
        return value[index]

    def encode_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """String inputs as int32 codes (the program cannot take strings)."""
        if not self.string_inputs:
            return feeds
        encoded = dict(feeds)
        for name, vocabulary in self.string_inputs.items():
            encoded[name] = encode_strings(feeds[name], vocabulary)
        return encoded

    def _ensure_decoders(self, arrays: list) -> None:
        # A program loaded from an artifact was never traced here: trace it once, abstractly,
        # to learn how its string/ZipMap outputs decode.
        if self._traced or not any(spec.dtype == np.dtype(object) for spec in self.output_specs.values()):
            return
        jax = jaxenv.jax_module()
        with jaxenv.x64():
            jax.eval_shape(self._forward, self.weights, tuple(_spec_of(a) for a in arrays))

    def _device_tails(self, tails: Tails, true_sizes: dict[str, int]) -> tuple:
        """The tails the program can cut itself: not of a bucketed axis (its start counts true entries,
        the program sees padded ones) and not of a string/ZipMap output (decoded on the host)."""
        device = []
        for name, (axis, start) in sorted(tails.items()):
            spec = self.output_specs.get(name)
            dims = spec.shape if spec is not None and spec.shape is not None else ()
            bucketed = axis < len(dims) and isinstance(dims[axis], str) and dims[axis] in true_sizes
            if not bucketed and (spec is None or spec.dtype != np.dtype(object)):
                device.append((name, axis, start))
        return tuple(device)

    def run(self, feeds: dict[str, np.ndarray], tails: Tails | None = None) -> dict[str, np.ndarray]:
        feeds = self.encode_feeds(feeds)
        arrays, true_sizes = self._bucketed(feeds)
        on_device = self._device_tails(tails, true_sizes) if tails else ()
        entry = self.compiled_for(arrays, on_device)
        if entry.eager:
            jax = jaxenv.jax_module()
            with jaxenv.x64():
                inputs = tuple(jax.device_put(a, self.device) if a is not None else None for a in arrays)
                outputs = entry.call(self.weights, inputs)
        else:
            with jaxenv.x64():
                outputs = entry.call(self.weights, tuple(arrays))
        self._ensure_decoders(arrays)
        result = {}
        for name, value in zip(self.output_names, outputs):
            if isinstance(value, list):
                result[name] = [np.asarray(v) for v in value]
            elif value is None:
                result[name] = None
            elif name in self.decoders:
                result[name] = self.decoders[name](np.asarray(value))
            else:
                result[name] = self._unbucket(name, np.asarray(value), true_sizes)
        if tails:
            cut = {name for name, _, _ in on_device}
            result = host_tails(result, {n: t for n, t in tails.items() if n not in cut},
                                where=f"xla:{self.device.platform}")
        return result

    def check_bucketing(self) -> None:
        """Bucketed dims must be symbolic dims of the inputs; say which are not."""
        dims = {d for spec in self.input_specs.values() for d in (spec.shape or ()) if isinstance(d, str)}
        unknown = [d for d in self.bucket if d not in dims]
        if unknown:
            raise InputError(f"xla: bucket names dim(s) {', '.join(unknown)} that no input of "
                             f"'{self.model.name}' has", hint=f"symbolic dims: {', '.join(sorted(dims)) or 'none'}")


_SUB_BYTE = ("int4", "uint4", "int2", "uint2", "float4_e2m1fn")


def _to_device(array: np.ndarray, device):
    jax = jaxenv.jax_module()
    if array.dtype.name in _SUB_BYTE:
        # device_put of an ml_dtypes int4 array hands XLA one byte per element, while compiled
        # programs expect packed 4-bit storage: upload as int8 and convert on the device.
        wide = np.int8 if array.dtype.name.startswith("int") else np.uint8
        if array.dtype.name.startswith("float"):
            wide = np.float32
        return jax.device_put(array.astype(wide), device).astype(array.dtype)
    return jax.device_put(array, device)


# str(dtype) costs ~4 us, paid for every input of every run (19 per decode step): the names are memoized
_DTYPE_NAMES: dict[Any, str] = {}


def _signature_of(value: Any) -> tuple:
    if value is None:
        return ("none",)
    if isinstance(value, (list, tuple)):
        return ("seq",) + tuple(_signature_of(v) for v in value)
    dtype = value.dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES.setdefault(dtype, str(dtype))
    shape = value.shape
    return (shape if type(shape) is tuple else tuple(shape), name)


def _spec_of(value: Any) -> Any:
    jax = jaxenv.jax_module()
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_spec_of(v) for v in value]
    return jax.ShapeDtypeStruct(value.shape, value.dtype)


def static_shapes(model) -> list[tuple[int, ...]] | None:
    """The input shapes when every input is fully static, else None."""
    shapes = []
    for spec in model.inputs:
        if spec.shape is None or any(not isinstance(d, int) for d in spec.shape):
            return None
        shapes.append(tuple(spec.shape))
    return shapes


__all__ = ["Compiled", "Program", "Stats", "static_shapes"]
