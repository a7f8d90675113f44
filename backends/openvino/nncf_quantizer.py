"""OpenVINO's native quantizer: NNCF on the ``ov.Model`` (``compile(..., quantizer="nncf")``).

``int8-weight`` and ``int4-weight`` use ``nncf.compress_weights`` (data-free);
``int8`` uses ``nncf.quantize`` with calibration feeds. The report has the same
fields as portarun's neutral quantizer: which nodes were quantized to what,
which kept a higher precision and why, and weight bytes before and after.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from portarun.plugin import (
    AccuracyFloor, CheckFailedError, Model, Precision, RandomCalibration, UnsupportedError, UsageError, default_dims_of,
    load_samples, measure_accuracy,
)

QUANTIZERS = ("nncf",)
DEFAULT_GROUP_SIZE = 128
MIN_GROUP_SIZE = 16  # portarun.quantize's smallest int4 block: the same portable-layout rule
GROUP_SIZE_FALLBACKS = ("adjust", "error", "ignore")
DEFAULT_CALIBRATION_SIZE = 16
DEFAULT_VALIDATION_SIZE = 4
# like portarun.quantize: a decoder is judged on what its user sees (next-token agreement with its 95 %
# interval) over at least this many prompts, not on 4 samples
DECODER_VALIDATION_SIZE = 32

# Ops whose second input is a weight NNCF may compress, and the ops that sit between a
# compressed constant and its consumer (decompression: convert, subtract zero point, scale, reshape).
_WEIGHTED_OPS = {"MatMul", "Convolution", "GroupConvolution", "Gather"}
_DECOMPRESSION_OPS = {"Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze", "Squeeze"}
_DATA_ONLY_OPS = {"Reshape", "Transpose", "Unsqueeze", "Squeeze"}
_INDEX_TYPES = {"i32", "i64", "u32", "u64", "boolean"}
_LOW_PRECISION = {"i8", "u8", "i4", "u4", "nf4", "f4e2m1", "f8e4m3", "f8e5m2"}


def _nncf():
    try:
        import nncf
        from nncf.common.logging.logger import set_log_level
    except ImportError as exc:
        raise UnsupportedError(f"openvino: quantizer='nncf' needs NNCF ({exc})", backend="openvino",
                               hint="pip install nncf") from None
    set_log_level(logging.ERROR)  # its tables go to the log; the report below says the same as data
    return nncf


@contextlib.contextmanager
def _quiet_stdout():
    # NNCF draws progress bars on stdout; portarun's stdout may carry JSON, so send them to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        yield


def constant_bytes(ov_model) -> int:
    """Bytes of every Constant in the model: weights plus scales, zero points and small shape tensors."""
    return int(sum(op.get_byte_size() for op in ov_model.get_ordered_ops() if op.get_type_name() == "Constant"))


def _weight_constant(node_input):
    """The largest Constant reachable from ``node_input`` through decompression ops, or None."""
    found = []
    stack = [node_input.get_source_output().get_node()]
    seen = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        kind = node.get_type_name()
        if kind == "Constant":
            if str(node.get_output_element_type(0).get_type_name()) not in _INDEX_TYPES:
                found.append(node)
        elif kind in _DATA_ONLY_OPS:  # their other inputs are shapes and axes, not weight data
            stack.append(node.input(0).get_source_output().get_node())
        elif kind in _DECOMPRESSION_OPS:
            stack.extend(i.get_source_output().get_node() for i in node.inputs())
    if not found:
        return None
    return max(found, key=lambda c: int(np.prod(list(c.get_output_shape(0))) or 1))


def _group_size(matmul, shape: list[int]) -> int:
    # NNCF splits the reduction axis K into [K/g, g]: [K/g, g, N] for a [K, N] weight, [N, K/g, g] when transposed.
    transposed = bool(matmul.get_attributes().get("transpose_b", False))
    return int(shape[2] if transposed else shape[1])


def _activation_quantized(node) -> bool:
    for node_input in node.inputs():
        producer = node_input.get_source_output().get_node()
        while producer.get_type_name() in ("Reshape", "Transpose"):
            producer = producer.input(0).get_source_output().get_node()
        if producer.get_type_name() == "FakeQuantize":
            return True
    return False


def describe_weights(ov_model) -> list[dict[str, Any]]:
    """One record per weighted op, in the neutral quantizer's NodeDecision shape:
    node, op, weight, level (int4 | int8 | int8+act | float), reason, block_size; plus ``element``."""
    decisions = []
    for node in ov_model.get_ordered_ops():
        kind = node.get_type_name()
        if kind not in _WEIGHTED_OPS:
            continue
        index = 0 if kind == "Gather" else 1
        if node.get_input_size() <= index:
            continue
        constant = _weight_constant(node.input(index))
        if constant is None:
            continue  # activation x activation (attention scores): nothing to compress
        shape = list(constant.get_output_shape(0))
        if kind == "Gather" and int(np.prod(shape) or 0) < 1024:
            continue  # a shape/index lookup, not an embedding table
        element = str(constant.get_output_element_type(0).get_type_name())
        record = {"node": node.get_friendly_name(), "op": kind, "weight": constant.get_friendly_name(),
                  "level": "float", "reason": "", "block_size": None, "element": element}
        if element in _LOW_PRECISION:
            record["level"] = "int4" if "4" in element else "int8"
            if len(shape) == 3 and kind == "MatMul":
                record["block_size"] = _group_size(node, shape)
            if _activation_quantized(node):
                record["level"] = "int8+act"
        else:
            record["reason"] = "NNCF left this weight in float"
        decisions.append(record)
    return decisions


def _mode(nncf, precision: Precision, options: dict[str, Any]):
    symmetric = options.get("symmetric")
    modes = nncf.CompressWeightsMode
    if precision is Precision.INT8_WEIGHT:
        return modes.INT8_SYM if symmetric else modes.INT8_ASYM
    return modes.INT4_ASYM if symmetric is False else modes.INT4_SYM


def _samples(model: Model, ov_model, options: dict[str, Any]) -> tuple[list[dict[str, np.ndarray]] | None, str]:
    """The calibration set, read like portarun.quantize reads it (npz, RandomCalibration, dicts); None if not given."""
    source = options.get("calibration")
    if source is None:
        return None, ""
    samples = load_samples(model, source)
    described = f"{len(samples)} samples from {source}" if isinstance(source, (str, Path)) else \
        f"{len(samples)} samples given in Python"
    return _fed(ov_model, samples), described


def _random(model: Model, ov_model, count: int, seed: int, options: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    # token ids stay inside their embedding table, masks and type ids in {0, 1}: random data the model can take;
    # a built-in model's own default dims (a decoder's past and total sequence) unless calibration_dims says
    dims = default_dims_of(model)
    dims.update(options.get("calibration_dims") or {})
    return _fed(ov_model, RandomCalibration(count, seed=seed, dims=dims).samples(model))


def _is_decoder(model: Model) -> bool:
    """An output named like logits [batch, seq, vocab]: judged by next tokens (portarun.quantize's rule)."""
    return any("logit" in spec.name.lower() and spec.shape is not None and len(spec.shape) == 3
               for spec in model.outputs)


def _advanced_int4(nncf, options: dict[str, Any]):
    """NNCF's group-size fallback: 'adjust' (default: a smaller group that divides the layer's K, down to 16,
    as portarun.quantize picks a smaller block), 'error' (NNCF's own default) or 'ignore' (keep it float)."""
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    mode = str(options.get("group_size_fallback") or "adjust").lower()
    if mode not in GROUP_SIZE_FALLBACKS:
        raise UsageError(f"openvino: unknown group_size_fallback '{mode}'",
                         hint=f"choose {', '.join(GROUP_SIZE_FALLBACKS)}")
    return AdvancedCompressionParameters(group_size_fallback_mode=getattr(GroupSizeFallbackMode, mode.upper()),
                                         min_adjusted_group_size=MIN_GROUP_SIZE), mode


def _fed(ov_model, samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    names = {name for port in ov_model.inputs for name in port.get_names()}  # OpenVINO drops unused inputs
    return [{k: v for k, v in sample.items() if k in names} for sample in samples]


def _outputs(ov_model, model: Model, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    # measured on the CPU in f32 with float activations: the error of the quantization itself
    from .devices import core

    compiled = core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                       "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0})
    request = compiled.create_infer_request()
    ports = {spec.name: compiled.output(spec.name) for spec in model.outputs}
    results = []
    for sample in feeds:
        out = request.infer(sample)
        results.append({name: out[port] for name, port in ports.items()})
    return results


def quantize(ov_model, model: Model, precision: Precision, options: dict[str, Any]):
    """Quantize ``ov_model`` with NNCF at ``precision``; returns (model, report).

    The report has the neutral quantizer's fields: nodes (NodeDecision-shaped), counts,
    weight bytes before/after and their ratio, and the accuracy against the float model
    on validation feeds, checked against ``accuracy_floor`` (the neutral defaults).
    """
    if not precision.is_quantized:
        raise UsageError(f"openvino: quantizer='nncf' needs a quantized precision, not {precision}",
                         hint="use -p int8, int8-weight or int4-weight")
    nncf = _nncf()
    floor = AccuracyFloor.parse(options.get("accuracy_floor"), precision)
    before = constant_bytes(ov_model)
    seed = int(options.get("seed") or 0)
    given, described = _samples(model, ov_model, options)
    samples = given
    if precision is Precision.INT8 and samples is None:
        count = int(options.get("calibration_size") or DEFAULT_CALIBRATION_SIZE)
        samples = _random(model, ov_model, count, seed, options)
        described = f"{count} random feeds (seed {seed}); pass calibration= real samples for better scales"
    count = int(options["accuracy_samples"]) if options.get("accuracy_samples") is not None else \
        DECODER_VALIDATION_SIZE if _is_decoder(model) else DEFAULT_VALIDATION_SIZE
    if given is not None:
        validation, validation_text = given[:count], "the calibration samples"
    else:
        validation, validation_text = _random(model, ov_model, count, seed + 1000, options) if count else [], \
            f"{count} random feeds (seed {seed + 1000})"
    expected = _outputs(ov_model, model, validation) if validation else []
    report: dict[str, Any] = {"quantizer": "nncf", "nncf_version": nncf.__version__, "precision": precision.value}
    with _quiet_stdout():
        if precision is Precision.INT8:
            model_type = options.get("model_type")
            kwargs: dict[str, Any] = {"subset_size": len(samples)}
            if model_type:
                kwargs["model_type"] = getattr(nncf.ModelType, str(model_type).upper())
            compressed = nncf.quantize(ov_model, nncf.Dataset(samples), **kwargs)
            report.update({"method": "nncf.quantize", "calibration": described, "calibration_method": "nncf default",
                           "model_type": str(model_type or "default")})
        else:
            mode = _mode(nncf, precision, options)
            kwargs = {"mode": mode}
            fallback = None
            if precision is Precision.INT4_WEIGHT:
                advanced, fallback = _advanced_int4(nncf, options)
                kwargs.update(group_size=int(options.get("group_size") or DEFAULT_GROUP_SIZE),
                              ratio=float(options.get("ratio") if options.get("ratio") is not None else 1.0),
                              all_layers=bool(options.get("all_layers", False)), advanced_parameters=advanced)
            compressed = nncf.compress_weights(ov_model, **kwargs)
            if fallback:
                report["group_size_fallback"] = fallback
            report.update({"method": "nncf.compress_weights", "mode": mode.value,
                           "calibration": "none (data-free)" + (f"; {described} for validation" if given else ""),
                           "block_size": kwargs.get("group_size"), "symmetric": "_sym" in mode.value,
                           **{k: v for k, v in kwargs.items() if k in ("ratio", "all_layers")}})
    nodes = describe_weights(compressed)
    wanted = {Precision.INT4_WEIGHT: "int4", Precision.INT8_WEIGHT: "int8", Precision.INT8: "int8+act"}[precision]
    for record in nodes:
        if record["level"] != wanted and not record["reason"]:
            record["reason"] = ("NNCF's backup precision for the first/last layer (all_layers=True makes it int4)"
                                if precision is Precision.INT4_WEIGHT and record["level"] == "int8"
                                else f"NNCF chose {record['level']}")
    counts: dict[str, int] = {}
    for record in nodes:
        counts[record["level"]] = counts.get(record["level"], 0) + 1
    after = constant_bytes(compressed)
    report.update({"nodes": nodes, "counts": counts, "weight_bytes_before": before, "weight_bytes_after": after,
                   "weight_ratio": round(after / before, 4) if before else None})
    if validation:
        accuracy = measure_accuracy(_outputs(compressed, model, validation), expected, floor)
        report.update({"floor": floor.text(), "floor_met": accuracy.passed, "validation": validation_text,
                       "accuracy": accuracy.to_dict()})
        if not accuracy.passed:
            raise CheckFailedError(
                f"openvino: NNCF {precision} of '{model.name}' misses the accuracy floor "
                f"({'; '.join(accuracy.failures)})", hint="lower accuracy_floor, or keep more in int8 "
                "(ratio=, all_layers=False, a smaller group_size), or use portarun.quantize with its fallback")
    else:
        report.update({"floor": floor.text(), "floor_met": None, "validation": "none (accuracy_samples=0)"})
    return compressed, report
