"""OpenVINO runtime backend: ``openvino:cpu``, ``:gpu[:N]``, ``:npu``, ``:auto``.

The ONNX model is read by OpenVINO's ONNX frontend and compiled with an explicit
``INFERENCE_PRECISION_HINT``; the compiled model is asked which precision it
really uses and a mismatch is refused. Quantized precisions run a model that
already carries QDQ as is, or, with ``quantizer="nncf"``, compress a float
model with NNCF (OpenVINO's native quantizer) and report what it did.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from portarun.plugin import (
    PROTOBUF_LIMIT, Backend, CompileError, Device, Executable, Manifest, Model, Precision, Provenance, Support,
    Target, UsageError, backend_cache_dir, first_line, payload_file, quantization_of, quantization_support,
)

from . import ir_cache, nncf_quantizer, qdq_forms
from .config import (cache_root, check_precision, compile_config, fit_to_device, float_precision,
                     keyed_cache, reported_activations, reported_properties)
from .devices import DEVICE_HINTS, INSTALL_HINT, OV_DEVICE_BY_KIND, capabilities, core, list_devices, ov_device, sdk
from .executable import IR_XML, OpenVinoExecutable, input_ports

# Options that are inputs to the compile only and are not stored in an artifact's manifest.
_TRANSIENT_OPTIONS = ("calibration", "cache_dir")


def _conversion_error(exc: Exception, model: Model) -> CompileError:
    """OpenVINO's frontend report as one CompileError naming the ops it could not convert."""
    text = str(exc)
    ops: list[str] = []
    for pattern in (r"No conversion rule found for operations:\s*(.+)", r"Conversion is failed for:\s*(.+)"):
        for match in re.finditer(pattern, text):
            ops += [op.strip() for op in match.group(1).split(",") if op.strip()]
    if ops:
        return CompileError(f"openvino cannot convert '{model.name}': no conversion for {', '.join(dict.fromkeys(ops))}",
                            backend="openvino",
                            hint="OpenVINO's ONNX frontend lacks these ops; rewrite them, or run another backend "
                                 "(`portarun backends`)")
    return CompileError(f"openvino cannot read '{model.name}': {_sdk_message(exc)}", backend="openvino")


def _sdk_message(exc: Exception) -> str:
    """The first line of an OpenVINO exception that says something (not its source-location frames)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check ", "FrontEnd API failed"))]
    return (useful or lines or [type(exc).__name__])[0]


def _check_fingerprint(compiled, payload: dict[str, Any], source_model: Model, fallback: str | None):
    """(compiled, fallback): the imported blob, or None and why, when it no longer computes what it did."""
    from .fingerprint import digest

    saved = payload.get("blob_fingerprint")
    if not saved:
        return compiled, fallback
    if digest(compiled, source_model.inputs, input_ports(compiled, source_model.inputs)) == saved:
        return compiled, fallback
    return None, "blob -> IR: the exported blob computes other outputs than when it was saved (altered, corrupt, or another CPU)"


class OpenVinoBackend(Backend):
    name = "openvino"
    description = "OpenVINO runtime (Intel CPU, GPU, NPU, AUTO), NNCF as its native quantizer"
    precisions = (Precision.FP32, Precision.BF16, Precision.FP16, Precision.INT8, Precision.INT8_WEIGHT,
                  Precision.INT4_WEIGHT)
    install_hint = INSTALL_HINT
    default_device = "cpu"
    device_kinds = tuple(OV_DEVICE_BY_KIND)
    options = {
        "performance_hint": "latency (default, batch 1) | throughput | cumulative_throughput",
        "streams": "NUM_STREAMS (default: what the performance hint picks)",
        "threads": "INFERENCE_NUM_THREADS (default: all cores)",
        "activations": "int8-weight / int4-weight: 'float' (default: activations stay float next to the int8/int4 "
                       "weights, exact) or 'int8-dynamic' (the CPU quantizes them to int8 per group on the fly: "
                       "VNNI/AMX integer kernels, a different precision, reported as such)",
        "dynamic_quantization_group_size": "int8-dynamic activations: values per activation scale (default 32); "
                                           "giving one above 0 implies activations='int8-dynamic'",
        "float_precision": "for quantized precisions, what the float parts compute in: fp32 (default) | bf16 | fp16",
        "cache": "use OpenVINO's model cache (default true)",
        "cache_dir": "model cache folder (default: portarun cache dir / openvino)",
        "config": "dict of extra OpenVINO properties passed to compile_model",
        "quantizer": "'nncf': quantize a float model with NNCF for int8 / int8-weight / int4-weight",
        "group_size": "nncf int4-weight group size (default 128)",
        "symmetric": "nncf weight mode: true = symmetric; default int8 asymmetric, int4 symmetric",
        "ratio": "nncf int4-weight: fraction of layers in int4, the rest int8 (default 1.0)",
        "all_layers": "nncf int4-weight: also make the first/last layers int4 (default false: NNCF keeps them int8)",
        "calibration": "nncf int8: feeds (list of dicts, or a .npz of [samples, ...] arrays per input)",
        "calibration_size": "nncf int8 without calibration: number of random feeds (default 16)",
        "calibration_dims": "nncf int8 without calibration: sizes of symbolic dims, e.g. {'seq': 128}",
        "seed": "nncf int8 random calibration seed (default 0)",
        "model_type": "nncf int8: 'transformer' for transformer-specific quantization scheme",
        "accuracy_floor": "nncf: bound checked against the float model, e.g. 'cosine=0.99' (default: portarun's "
                          "per-precision floor); a miss is an error",
        "accuracy_samples": "nncf: validation feeds for the accuracy check (default 4, 32 for a decoder (logits "
                            "output) like portarun.quantize; 0 skips it)",
        "group_size_fallback": "nncf int4-weight, a layer whose K the group size does not divide: 'adjust' (default: "
                               "a smaller group down to 16), 'error' or 'ignore' (keep it float)",
    }

    # -- facts -------------------------------------------------------------------------
    def sdk_version(self) -> str:
        return sdk().__version__

    def devices(self) -> list[Device]:
        return list_devices(self.name)

    def device_hint(self, device: str) -> str | None:
        return DEVICE_HINTS.get(device, INSTALL_HINT)

    def _check_options(self, options: dict[str, Any]) -> None:
        quantizer = options.get("quantizer")
        if quantizer is not None and quantizer not in nncf_quantizer.QUANTIZERS:
            raise UsageError(f"openvino: unknown quantizer '{quantizer}'",
                             hint=f"choose one of: {', '.join(nncf_quantizer.QUANTIZERS)}")

    def quantizes_float_models(self, options: dict[str, Any]) -> bool:
        return options.get("quantizer") is not None  # NNCF compresses the float model

    def _supports(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Support:
        # a float model at int8-weight is fine when NNCF will compress it
        quantizer = options.get("quantizer")
        carried = quantization_of(model)
        if quantizer is not None:
            if carried is not None:
                return Support.no(f"the model is already quantized ({carried}); compile it with -p {carried} "
                                  "and no quantizer")
            if not precision.is_quantized:
                return Support.no(f"quantizer='{quantizer}' needs a quantized precision, not {precision}")
        else:
            fits = quantization_support(model, precision,
                                        float_model_hint=", or compile with quantizer='nncf' (OpenVINO's own)")
            if not fits:
                return fits
        if carried is not None:
            short = qdq_forms.short_block_dequantize(model)
            if short:
                return Support.no(f"OpenVINO's ONNX frontend cannot convert a blocked DequantizeLinear whose axis "
                                  f"is not a whole number of blocks: {'; '.join(short[:3])}"
                                  f"{f' and {len(short) - 3} more' if len(short) > 3 else ''}; re-quantize with a "
                                  "block size that divides it (portarun quantize picks one when it can)")
        if precision in (Precision.BF16, Precision.FP16):
            device = ov_device(target)
            caps = capabilities(device)
            if caps and precision.value.upper() not in caps:
                return Support.no(f"{device} cannot compute in {precision} here "
                                  f"(its capabilities: {', '.join(sorted(caps))})")
        return Support.yes()

    # -- compile -------------------------------------------------------------------------
    def _read_for_compile(self, model: Model, cache_dir: Path | None):
        """(ov.Model, IR cache hit): with a cache the converted IR is kept by the model's content."""
        if cache_dir is None:
            return self.read_model(model), False
        return ir_cache.read_cached(model, cache_dir, lambda: self.read_model(model))

    def read_model(self, model: Model):
        """The ONNX model as an ``ov.Model``; conversion failures become CompileError naming the ops."""
        try:
            if model.byte_size > PROTOBUF_LIMIT and model.path is not None:
                return core().read_model(str(model.path))  # external data beside it
            return core().read_model(model.serialized())
        except Exception as exc:
            raise _conversion_error(exc, model) from exc

    def _cache_dir(self, options: dict[str, Any]) -> Path | None:
        if options.get("cache") is False:
            return None
        return backend_cache_dir(self.name, options.get("cache_dir"))

    def _config(self, target: Target, precision: Precision, options: dict[str, Any]) -> dict[str, Any]:
        device = ov_device(target)
        config = compile_config(precision, options, self._cache_dir(options), str(target))
        try:
            supported = {str(p) for p in core().get_property(device, "SUPPORTED_PROPERTIES")}
        except Exception:
            supported = set()
        return keyed_cache(fit_to_device(config, supported, options))

    def _compile(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Executable:
        from .guards import check as guard

        guard(model.proto, model.name, str(target))  # graphs OpenVINO would compile for hours
        device = ov_device(target)
        start = time.perf_counter()
        ov_model, ir_hit = self._read_for_compile(model, self._cache_dir(options))
        details: dict[str, Any] = {"read_model_seconds": round(time.perf_counter() - start, 4),
                                   "ir_cache_hit": ir_hit}
        if options.get("quantizer"):
            start = time.perf_counter()
            ov_model, details["quantization"] = nncf_quantizer.quantize(ov_model, model, precision, options)
            details["quantize_seconds"] = round(time.perf_counter() - start, 4)
        config = self._config(target, precision, options)
        start = time.perf_counter()
        try:
            compiled = core().compile_model(ov_model, device, config)
        except Exception as exc:
            raise CompileError(f"openvino failed to compile '{model.name}' for {target} ({device}): "
                               f"{_sdk_message(exc)}",
                               backend=self.name) from exc
        details["compile_model_seconds"] = round(time.perf_counter() - start, 4)
        stored = {k: v for k, v in options.items() if k not in _TRANSIENT_OPTIONS}
        kept = ov_model if options.get("quantizer") else None  # see OpenVinoExecutable.source_model
        return self._executable(compiled, kept, model, target, precision, config, stored, details)

    def _executable(self, compiled, ov_model, model: Model, target: Target, precision: Precision,
                    config: dict[str, Any], options: dict[str, Any], details: dict[str, Any]) -> OpenVinoExecutable:
        device = ov_device(target)
        reported = reported_properties(compiled)
        computed = check_precision(float_precision(precision, options), reported, str(target))
        execution = tuple(reported.get("EXECUTION_DEVICES") or (device,))
        try:
            description = str(core().get_property(execution[0], "FULL_DEVICE_NAME"))
        except Exception as exc:  # the device still ran; say why its name is missing
            description = execution[0]
            reported.setdefault("unreadable", {})["FULL_DEVICE_NAME"] = first_line(exc)
        details = {
            "inference_precision": reported["INFERENCE_PRECISION_HINT"],
            "performance_hint": reported.get("PERFORMANCE_HINT"),
            "num_streams": reported.get("NUM_STREAMS"),
            "inference_num_threads": reported.get("INFERENCE_NUM_THREADS"),
            "dynamic_quantization_group_size": reported.get("DYNAMIC_QUANTIZATION_GROUP_SIZE"),
            "activations": reported_activations(precision, options, reported, str(target)),
            "loaded_from_cache": reported.get("LOADED_FROM_CACHE"),
            "cache_dir": cache_root(config),
            "openvino_device": device,
            "unreadable_properties": reported.get("unreadable", {}),  # SDK property reads that failed, with why
            **details,
        }
        provenance = Provenance(
            backend=self.name, sdk_version=sdk().__version__, target=str(target), device=description,
            # float precisions: what the compiled model reports; quantized ones keep their name and
            # say what the float parts computed in (details.inference_precision)
            precision=computed.value if precision.is_float else precision.value,
            providers=execution, details=details)
        executable = OpenVinoExecutable(compiled, ov_model, device=device, compile_config=config, backend=self,
                                        model=model, target=target, precision=precision, provenance=provenance,
                                        options=options)
        if executable.dropped_inputs:
            provenance.details["dropped_inputs"] = executable.dropped_inputs
        return executable

    # -- artifacts -----------------------------------------------------------------------
    def artifact_incompatibility(self, manifest: Manifest) -> str | None:
        payload = manifest.extras
        if not payload.get("ir"):
            return "the artifact holds no OpenVINO IR"
        version = sdk().get_version()
        if payload.get("blob") and payload.get("openvino_version") != version:
            return (f"its compiled blob was exported by OpenVINO {payload.get('openvino_version')} for "
                    f"{payload.get('blob_device')}; this machine has OpenVINO {version}")
        return None

    def _read_ir(self, payload_dir: Path, manifest: Manifest):
        return core().read_model(str(payload_file(payload_dir, manifest.extras.get("ir", IR_XML))))

    @staticmethod
    def _kept_details(manifest: Manifest) -> dict[str, Any]:
        """What a load keeps from the compile's provenance: what NNCF did."""
        return {k: v for k, v in manifest.provenance.get("details", {}).items()
                if k in ("quantization", "quantize_seconds")}

    def _load_payload(self, payload_dir: Path, source_model: Model, manifest: Manifest,
                      target: Target) -> Executable:
        payload = manifest.extras
        device = ov_device(target)
        options = manifest.options
        precision = manifest.precision
        ov_model = self._read_ir(payload_dir, manifest)
        start = time.perf_counter()
        compiled, how, fallback = None, "IR", None
        if payload.get("blob") and payload.get("blob_device") != device:
            fallback = f"blob exported for {payload.get('blob_device')}, loading on {device}: compiled the IR"
        if payload.get("blob") and payload.get("blob_device") == device:
            config = dict(payload.get("compile_config") or {})  # the precision hint must be given again
            blob = payload_file(payload_dir, payload["blob"]).read_bytes()
            try:
                compiled = core().import_model(blob, device, config)
                how = "exported blob"
                compiled, fallback = _check_fingerprint(compiled, payload, source_model, fallback)
                if compiled is None:
                    how = "IR (the exported blob computes other outputs than when it was saved)"
            except Exception as exc:
                # same OpenVINO and device, yet the plugin refuses the blob (e.g. another CPU generation):
                # the IR holds the same model, so compile it, and say so in provenance
                how = f"IR (the exported blob was refused: {_sdk_message(exc)})"
                fallback = f"blob -> IR: the exported blob was refused ({_sdk_message(exc)})"
        if compiled is None:
            config = self._config(target, precision, options)
            try:
                compiled = core().compile_model(ov_model, device, config)
            except Exception as exc:
                raise CompileError(f"openvino could not compile the IR of '{manifest.path}' for {target}: "
                                   f"{_sdk_message(exc)}", backend=self.name) from exc
        details = self._kept_details(manifest)
        details.update({"loaded_from": str(manifest.path), "loaded_as": how,
                        "load_seconds": round(time.perf_counter() - start, 4)})
        if fallback:  # the artifact did not load the way it was saved: say so where provenance is read
            details["fallback"] = fallback
        executable = self._executable(compiled, ov_model, source_model, target, precision, config, options, details)
        executable.provenance.compile_seconds = details["load_seconds"]
        return executable

    def _rebuild(self, payload_dir: Path, source_model: Model, manifest: Manifest, target: Target) -> Executable:
        """Recompile from the IR in the payload: it keeps an NNCF-compressed model as compressed."""
        reason = self.artifact_incompatibility(manifest)
        if not manifest.extras.get("ir"):
            return super()._rebuild(payload_dir, source_model, manifest, target)
        device = ov_device(target)
        options = manifest.options
        precision = manifest.precision
        start = time.perf_counter()
        ov_model = self._read_ir(payload_dir, manifest)
        config = self._config(target, precision, options)
        compiled = core().compile_model(ov_model, device, config)
        details = self._kept_details(manifest)
        details.update({"rebuilt_from": "IR", "rebuild_reason": reason or "artifact compiled for another target",
                        "compile_model_seconds": round(time.perf_counter() - start, 4)})
        executable = self._executable(compiled, ov_model, source_model, target, precision, config, options, details)
        executable.provenance.compile_seconds = time.perf_counter() - start
        return executable


__all__ = ["OpenVinoBackend"]
