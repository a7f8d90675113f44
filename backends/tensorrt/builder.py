"""ONNX -> TensorRT engine: OnnxParser into a network, a builder config, one serialized engine.

Follows the TensorRT 10 Python API: ``trt.Builder`` -> ``create_network(flags)`` ->
``trt.OnnxParser.parse`` -> ``create_builder_config`` (memory pool limit, precision
flags, optimization profile, timing cache) -> ``build_serialized_network``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portarun.plugin import CompileError, Model, PROTOBUF_LIMIT, UsageError

from .precision import PrecisionPlan, apply_precision, network_flags
from .profiles import Profile, apply_profile

BACKEND = "tensorrt"


@dataclass(frozen=True)
class BuildSettings:
    """Builder settings that change the engine; all of them go into the engine cache key."""

    workspace_mb: int | None = None  # None: TensorRT's default (the device's memory)
    optimization_level: int = 3  # TensorRT's default; 0-5, higher builds longer for faster engines
    tf32: bool = False

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "BuildSettings":
        workspace = options.get("workspace_mb")
        level = int(options.get("builder_optimization_level", 3))
        if not 0 <= level <= 5:
            raise UsageError(f"{BACKEND}: builder_optimization_level must be 0-5, got {level}")
        if workspace is not None and int(workspace) <= 0:
            raise UsageError(f"{BACKEND}: workspace_mb must be positive, got {workspace}")
        return cls(None if workspace is None else int(workspace), level, bool(options.get("tf32", False)))

    def to_dict(self) -> dict[str, Any]:
        return {"workspace_mb": self.workspace_mb, "optimization_level": self.optimization_level, "tf32": self.tf32}


def format_parser_errors(parser: Any, limit: int = 10) -> str:
    """One line per ``trt.OnnxParser`` error, naming the node, its op and what went wrong."""
    lines = []
    count = int(parser.num_errors)
    for index in range(min(count, limit)):
        error = parser.get_error(index)
        desc = _call(error, "desc") or str(error)
        node_name = _call(error, "node_name")
        node_op = _call(error, "node_operator")
        node_index = _call(error, "node")
        where = []
        if node_name:
            where.append(f"node '{node_name}'")
        elif node_index is not None and int(node_index) >= 0:
            where.append(f"node #{node_index}")
        if node_op:
            where.append(f"({node_op})")
        lines.append((" ".join(where) + ": " if where else "") + str(desc).strip())
    if count > limit:
        lines.append(f"... and {count - limit} more")
    return "; ".join(lines)


def _call(obj: Any, method: str) -> Any:
    fn = getattr(obj, method, None)
    if fn is None:
        return None
    try:
        return fn()
    except Exception:  # an older parser without that accessor
        return None


def parse_onnx(trt: Any, network: Any, model: Model, logger: Any) -> Any:
    parser = trt.OnnxParser(network, logger)
    if model.byte_size <= PROTOBUF_LIMIT:
        if model.path is not None:  # the path lets the parser resolve any external weights
            ok = parser.parse(model.serialized(), str(model.path))
        else:
            ok = parser.parse(model.serialized())
    elif model.path is not None:
        ok = parser.parse_from_file(str(model.path))
    else:
        raise CompileError(f"{BACKEND}: model '{model.name}' is over 2 GiB and was not loaded from a file",
                           backend=BACKEND, hint="save it with external data and load it from disk")
    if not ok:
        raise CompileError(f"TensorRT's ONNX parser rejected '{model.name}': {format_parser_errors(parser)}",
                           backend=BACKEND, hint="check the ops against TensorRT's ONNX operator support matrix; "
                                                 "`portarun inspect MODEL` lists the graph's ops")
    return parser


def check_network_inputs(network: Any, profile: Profile) -> None:
    names = []
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        names.append(tensor.name)
        if getattr(tensor, "is_shape_tensor", False):
            raise CompileError(f"{BACKEND}: input '{tensor.name}' is a shape tensor; portarun's profiles cover "
                               "execution tensors only", backend=BACKEND,
                               hint="fold the shape input into the model (e.g. with onnxsim) or make it a constant")
    missing = [name for name in names if name not in profile]
    if missing:
        raise CompileError(f"{BACKEND}: the parsed network has input(s) {', '.join(missing)} that the model's "
                           "signature does not list", backend=BACKEND)


def build_engine(trt: Any, model: Model, plan: PrecisionPlan, profile: Profile, settings: BuildSettings,
                 logger: Any, timing_cache: bytes | None = None) -> tuple[bytes, bytes]:
    """Build one engine; returns (serialized engine, updated timing cache)."""
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, plan))
    parser = parse_onnx(trt, network, model, logger)
    check_network_inputs(network, profile)
    config = builder.create_builder_config()
    if settings.workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    config.builder_optimization_level = settings.optimization_level
    apply_precision(trt, config, plan)
    apply_profile(builder, config, profile)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CompileError(f"TensorRT could not build an engine for '{model.name}' at {plan.precision}: "
                           f"{logger.errors() or 'no reason logged'}", backend=BACKEND,
                           hint="a larger --option workspace_mb=..., a narrower profile, or another precision may help")
    del parser  # the parser owns weights the network used until the build finished
    return bytes(serialized), bytes(config.get_timing_cache().serialize())
