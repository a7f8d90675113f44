"""The OpenVINO properties a compile asks for, and what the compiled model says it got.

Every performance and precision switch lives here, in one place. The precision
rule: OpenVINO computes in bf16 by default on CPUs with AVX-512 BF16 or AMX, so
every compile sets ``INFERENCE_PRECISION_HINT`` explicitly, and
``check_precision`` compares what the compiled model reports with what was
asked; a mismatch is an error, never a silent downgrade.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from portarun.plugin import CompileError, Precision, UnsupportedError, UsageError, first_line

# portarun float precision -> OpenVINO element type name for INFERENCE_PRECISION_HINT
HINT_BY_PRECISION = {Precision.FP32: "f32", Precision.BF16: "bf16", Precision.FP16: "f16"}
PRECISION_BY_HINT = {v: k for k, v in HINT_BY_PRECISION.items()}

ACTIVATIONS = ("float", "int8-dynamic")
# activations quantized per group of this many: OpenVINO's CPU default (ov::hint::dynamic_quantization_group_size)
DYNAMIC_GROUP_DEFAULT = 32

PERFORMANCE_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}

# Properties portarun sets itself; a raw ``config`` may not override them behind its back.
OWNED_PROPERTIES = ("INFERENCE_PRECISION_HINT", "CACHE_DIR")

# Read back from the compiled model for provenance (those a device does not know are skipped).
REPORTED_PROPERTIES = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
                       "EXECUTION_DEVICES", "DYNAMIC_QUANTIZATION_GROUP_SIZE", "OPTIMAL_NUMBER_OF_INFER_REQUESTS")


def float_precision(precision: Precision, options: dict[str, Any]) -> Precision:
    """The precision of the float arithmetic: the precision itself, or for a quantized one the
    ``float_precision`` option (fp32 unless asked: int8-weight means float activations, not bf16)."""
    if precision.is_float:
        if options.get("float_precision") is not None:
            raise UsageError(f"openvino: float_precision applies to quantized precisions; use -p {precision} alone",
                             hint="precision already says what the float parts compute in")
        return precision
    try:
        chosen = Precision.parse(options.get("float_precision") or "fp32")
    except UsageError as exc:
        raise UsageError(f"openvino: float_precision: {exc.message}", hint="choose fp32, bf16 or fp16") from None
    if chosen not in HINT_BY_PRECISION:
        raise UsageError(f"openvino: float_precision must be fp32, bf16 or fp16, not {chosen}")
    return chosen


def activation_mode(precision: Precision, options: dict[str, Any], target: str) -> tuple[str, int]:
    """What meets the int8/int4 weights: ('float', 0), exact, what a weight-only precision promises (OpenVINO's
    own CPU default, group 32, would quantize them silently: not here), or ('int8-dynamic', group size), the
    CPU quantizing activations to int8 per group on the fly, a different precision the user names with
    ``activations='int8-dynamic'`` (as on onnxruntime) or by giving ``dynamic_quantization_group_size``."""
    raw_group = options.get("dynamic_quantization_group_size")
    try:
        group = None if raw_group is None else int(raw_group)
    except (TypeError, ValueError):
        group = -1
    if group is not None and group < 0:
        raise UsageError(f"{target}: dynamic_quantization_group_size must be a whole number >= 0, not {raw_group!r}",
                         hint=f"e.g. {DYNAMIC_GROUP_DEFAULT} (a multiple of 16), or 0 for float activations")
    raw = options.get("activations")
    activations = str(raw).lower() if raw is not None else ("int8-dynamic" if group else "float")
    if activations not in ACTIVATIONS:
        raise UsageError(f"{target}: unknown activations '{raw}'", hint=f"choose {' or '.join(ACTIVATIONS)}")
    if activations == "float":
        if group:
            raise UsageError(f"{target}: activations='float' keeps them exact, but dynamic_quantization_group_size="
                             f"{group} quantizes them to int8", hint="drop one of the two options")
        return "float", 0
    if not precision.is_weight_only:
        raise UsageError(f"{target}: int8-dynamic activations meet int8/int4 weight-only weights; {precision} has "
                         "none (int8 quantizes activations statically, float precisions keep float weights)",
                         hint="use -p int8-weight or -p int4-weight, or drop activations / "
                              "dynamic_quantization_group_size")
    if group == 0:
        raise UsageError(f"{target}: activations='int8-dynamic' needs a group size above 0",
                         hint=f"drop dynamic_quantization_group_size (default {DYNAMIC_GROUP_DEFAULT})")
    return "int8-dynamic", group or DYNAMIC_GROUP_DEFAULT


def compile_config(precision: Precision, options: dict[str, Any], cache_dir: Path | None,
                   target: str) -> dict[str, Any]:
    """Properties for ``compile_model``/``import_model`` from portarun's options (``target`` names errors)."""
    config: dict[str, Any] = {}
    raw = dict(options.get("config") or {})
    clash = [key for key in raw if key.upper() in OWNED_PROPERTIES]
    if clash:
        raise UsageError(f"openvino: config may not set {', '.join(clash)}",
                         hint="choose the precision with -p/precision= and the cache with cache_dir=")
    config.update({str(k): v for k, v in raw.items()})
    config["INFERENCE_PRECISION_HINT"] = HINT_BY_PRECISION[float_precision(precision, options)]
    hint = str(options.get("performance_hint") or "latency").lower()
    if hint not in PERFORMANCE_HINTS:
        raise UsageError(f"openvino: unknown performance_hint '{hint}'", hint=f"choose one of {', '.join(PERFORMANCE_HINTS)}")
    config["PERFORMANCE_HINT"] = PERFORMANCE_HINTS[hint]
    if options.get("streams") is not None:
        config["NUM_STREAMS"] = int(options["streams"])
    if options.get("threads"):
        config["INFERENCE_NUM_THREADS"] = int(options["threads"])
    config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = activation_mode(precision, options, target)[1]
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def keyed_cache(config: dict[str, Any]) -> dict[str, Any]:
    """Point CACHE_DIR at one sub-folder per compile configuration.

    OpenVINO 2026.4's CPU model-cache key ignores INFERENCE_PRECISION_HINT: a bf16 compile after an
    fp32 one of the same model loads the fp32 blob and applies bf16 at load, which computes NaNs on
    AMX CPUs (Sapphire Rapids; seen 2,300-4,100 NaN outputs of 4,096 on the built-in transformer).
    Keying the folder by every other property keeps each precision's blob apart.
    """
    if "CACHE_DIR" not in config:
        return config
    settings = json.dumps({k: str(v) for k, v in config.items() if k != "CACHE_DIR"}, sort_keys=True)
    key = hashlib.sha256(settings.encode()).hexdigest()[:16]
    return {**config, "CACHE_DIR": str(Path(config["CACHE_DIR"]) / f"config-{key}")}


def cache_root(config: dict[str, Any]) -> str | None:
    """The cache folder the user chose (CACHE_DIR without the per-configuration sub-folder)."""
    entry = config.get("CACHE_DIR")
    return str(Path(entry).parent) if entry else None


def fit_to_device(config: dict[str, Any], supported: set[str], options: dict[str, Any]) -> dict[str, Any]:
    """Drop the exactness default a device does not know (AUTO, NPU); a switch the user set explicitly stays,
    so the device refuses it loudly instead."""
    if supported and "DYNAMIC_QUANTIZATION_GROUP_SIZE" not in supported \
            and options.get("dynamic_quantization_group_size") is None and options.get("activations") is None:
        config = {k: v for k, v in config.items() if k != "DYNAMIC_QUANTIZATION_GROUP_SIZE"}
    return config


def type_name(value: Any) -> str:
    """'f32' for an ov.Type, the text for anything else."""
    getter = getattr(value, "get_type_name", None)
    return str(getter()) if getter else str(value)


def reported_properties(compiled) -> dict[str, Any]:
    """What the compiled model says about itself, as plain JSON-able values.

    A property the device lists but fails to read is not silently dropped: ``report["unreadable"]``
    maps it to the SDK's message, and provenance shows it.
    """
    report: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    try:
        supported = set(compiled.get_property("SUPPORTED_PROPERTIES"))
    except Exception as exc:
        supported = set(REPORTED_PROPERTIES)
        unreadable["SUPPORTED_PROPERTIES"] = first_line(exc)
    for key in REPORTED_PROPERTIES:
        if key not in supported:
            continue
        try:
            value = compiled.get_property(key)
        except Exception as exc:
            unreadable[key] = first_line(exc)
            continue
        if key == "INFERENCE_PRECISION_HINT":
            value = type_name(value)
        elif key == "PERFORMANCE_HINT":
            value = getattr(value, "name", str(value))
        elif isinstance(value, (list, tuple)):
            value = [str(v) for v in value]
        elif not isinstance(value, (int, float, bool, str)):
            value = str(value)
        report[key] = value
    try:
        report["LOADED_FROM_CACHE"] = bool(compiled.get_property("LOADED_FROM_CACHE"))
    except Exception as exc:
        unreadable["LOADED_FROM_CACHE"] = first_line(exc)
    if "INFERENCE_PRECISION_HINT" not in report:
        _hint_from_devices(compiled, report, unreadable)
    if unreadable:
        report["unreadable"] = unreadable
    return report


def _hint_from_devices(compiled, report: dict[str, Any], unreadable: dict[str, str]) -> None:
    """AUTO does not report a precision itself; its DEVICE_PROPERTIES hold each device's. Use them when
    every device it executes on agrees, and name them."""
    try:
        per_device = dict(compiled.get_property("DEVICE_PROPERTIES"))
    except Exception as exc:
        unreadable["DEVICE_PROPERTIES"] = first_line(exc)
        return
    executing = [str(d) for d in report.get("EXECUTION_DEVICES") or per_device]
    hints = {device: type_name(props.get("INFERENCE_PRECISION_HINT")) for device, props in per_device.items()
             if device in executing and hasattr(props, "get") and props.get("INFERENCE_PRECISION_HINT") is not None}
    if hints and len(set(hints.values())) == 1 and set(hints) == set(executing):
        report["INFERENCE_PRECISION_HINT"] = next(iter(hints.values()))
        report["INFERENCE_PRECISION_HINT_FROM"] = sorted(hints)


def reported_activations(precision: Precision, options: dict[str, Any], reported: dict[str, Any],
                         target: str) -> str | None:
    """For provenance: what met the weights of a weight-only precision, as the compiled model reports it
    (None for other precisions). Asked for int8-dynamic yet compiled without it is an error, not a downgrade."""
    if not precision.is_weight_only:
        return None
    asked, _ = activation_mode(precision, options, target)
    group = reported.get("DYNAMIC_QUANTIZATION_GROUP_SIZE")
    got = asked if group is None else ("int8-dynamic" if int(group) else "float")
    if got != asked:
        raise UnsupportedError(f"{target}: asked for {asked} activations, the compiled model reports "
                               f"DYNAMIC_QUANTIZATION_GROUP_SIZE={group}", hint="this device cannot do it; drop "
                               "activations / dynamic_quantization_group_size")
    return got


def check_precision(asked: Precision, reported: dict[str, Any], target: str) -> Precision:
    """The float precision the compiled model computes in; CompileError when it is not the one asked."""
    hint = reported.get("INFERENCE_PRECISION_HINT")
    if hint is None:
        failed = (reported.get("unreadable") or {}).get("INFERENCE_PRECISION_HINT")
        raise CompileError(f"openvino on {target} does not report INFERENCE_PRECISION_HINT"
                           f"{f' (reading it failed: {failed})' if failed else ''}, so {asked} "
                           "cannot be confirmed", backend="openvino",
                           hint="compile for a concrete device (openvino:cpu, openvino:gpu) instead")
    got = PRECISION_BY_HINT.get(hint)
    if got is not asked:
        raise CompileError(f"openvino was asked for {asked} on {target} but the compiled model computes in "
                           f"{hint}: refusing the silent precision change", backend="openvino",
                           hint=f"this device does not run {asked}; `portarun backends` lists what it supports")
    return got
