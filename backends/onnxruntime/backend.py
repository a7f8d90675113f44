"""ONNX Runtime: the CPU EP, and the CUDA, TensorRT, MIGraphX/ROCm and OpenVINO EPs by target.

``onnxruntime:cuda`` asks for the CUDA EP and nothing else: if this onnxruntime
build lacks it the compile fails with the package to install, and if ORT
quietly creates the session on the CPU anyway (it does that when an EP fails to
initialize) the compile fails too. Nodes an EP cannot take still run on the
CPU EP inside the session, as ORT always does; ``provenance.providers`` lists
the EPs the session really has.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from portarun.plugin import (
    PROTOBUF_LIMIT, Backend, CompileError, Device, Executable, Manifest, Model, Precision, Provenance, Support,
    Target, UnsupportedError, UsageError, backend_cache_dir, cpu_name, first_line, import_sdk, native_logs_quiet,
    quantization_support,
)

from .providers import EP_BY_DEVICE, ExecutionProviderChoice, choose_providers

INSTALL_HINT = "pip install 'portarun[onnxruntime]'"
ACCURACY_LEVEL_KEY = "session.qdq_matmulnbits_accuracy_level"

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
OPTIMIZED_MODEL = "optimized.onnx"


def _ort():
    ort = import_sdk("onnxruntime", backend="onnxruntime", hint=INSTALL_HINT)
    if native_logs_quiet():  # the error becomes a PortarunError; ORT's own "[E:onnxruntime:...]" line is noise
        ort.set_default_logger_severity(4)
    return ort


class OnnxRuntimeExecutable(Executable):
    def __init__(self, session, choice: ExecutionProviderChoice, source: Model | Path, **kwargs: Any):
        super().__init__(**kwargs)
        self.session = session
        self.choice = choice
        # What ORT was given: the model as prepared for it (fp16-converted, lowered), or, for an
        # executable loaded from an artifact, that artifact's optimized payload file.
        self.source = source
        self._output_names = [o.name for o in session.get_outputs()]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(self._output_names, feeds)
        return dict(zip(self._output_names, results))

    def _save_payload(self, payload_dir: Path) -> dict[str, Any]:
        if isinstance(self.source, Path):  # already the optimized graph (and its weights): keep them as they are
            for name in (self.source.name, self.source.name + ".data"):
                if (self.source.parent / name).exists():
                    shutil.copyfile(self.source.parent / name, payload_dir / name)
            return {"optimized_model": self.source.name}
        # Re-create the session with optimized_model_filepath set: ORT writes the
        # graph as it will run it (fusions, layout changes) for this EP and hardware.
        options = self.backend.session_options(self.options)
        options.optimized_model_filepath = str(payload_dir / OPTIMIZED_MODEL)
        if self.source.byte_size > PROTOBUF_LIMIT // 2:
            options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                             OPTIMIZED_MODEL + ".data")
            options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                             "1024")
        self.backend.create_session(self.backend.model_source(self.source), options, self.choice, self.target,
                                    f"'{self.model.name}'")
        return {"optimized_model": OPTIMIZED_MODEL}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    description = "ONNX Runtime (CPU; CUDA, TensorRT, MIGraphX/ROCm and OpenVINO execution providers)"
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8, Precision.INT8_WEIGHT, Precision.INT4_WEIGHT)
    install_hint = INSTALL_HINT
    default_device = "cpu"
    device_kinds = tuple(EP_BY_DEVICE)
    options = {
        "threads": "intra-op threads (0 = ORT default: one per physical core)",
        "inter_op_threads": "inter-op threads (0 = ORT default)",
        "graph_optimization_level": "disable | basic | extended | all (default all)",
        "session_config": "dict of ORT session config entries, e.g. {'session.qdq_matmulnbits_accuracy_level': '0'}",
        "provider_options": "dict of options for the target's execution provider",
        "cache_dir": "folder for EP caches (TensorRT engines, MIGraphX models); default the portarun cache",
        "lower_int4": "int4-weight: 'matmulnbits' rewrites blocked DQ+MatMul as MatMulNBits and DQ+Gather as "
                      "GatherBlockQuantized (default: ORT fuses the MatMuls, dequantizes whole embedding tables)",
        "lower_int8": "int8-weight / int4-weight: 'matmulnbits' rewrites per-channel int8 DQ+MatMul / DQ+Gather as 8-bit "
                      "MatMulNBits / GatherBlockQuantized (default: ORT fuses the MatMuls itself)",
        "matmulnbits_accuracy_level": "0-4: how MatMulNBits computes (0/1 fp32 exact, 4 int8 activations: ORT default)",
    }
    # fast on the CPU, and exact once int4 weight-only MatMuls keep float activations (ORT quantizes them
    # to int8 by default): the quantizer's evaluator
    exact_evaluation_options = {"session_config": {ACCURACY_LEVEL_KEY: "0"}}

    # -- facts -------------------------------------------------------------------------
    def sdk_version(self) -> str:
        return _ort().__version__

    def devices(self) -> list[Device]:
        ort = _ort()
        available = set(ort.get_available_providers())
        devices = []
        for kind, candidates in EP_BY_DEVICE.items():
            present = [ep for ep in candidates if ep in available]
            if present:
                devices.append(Device(self.name, kind, None, description=present[0]))
        return devices

    def device_hint(self, device: str) -> str | None:
        from .providers import INSTALL_BY_DEVICE

        return INSTALL_BY_DEVICE.get(device, INSTALL_HINT)

    def _supports(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Support:
        # fp16 on the CPU EP runs, with casts around the many fp32-only kernels.
        return quantization_support(model, precision)

    # -- compile -------------------------------------------------------------------------
    def model_source(self, model: Model) -> bytes | str:
        """Bytes when the model fits in one protobuf, else its path (external data beside it)."""
        if model.byte_size <= PROTOBUF_LIMIT:
            return model.serialized()
        if model.path is None:
            raise CompileError(f"model '{model.name}' is over 2 GiB and was not loaded from a file",
                               backend=self.name, hint="save it with external data and load it from disk")
        return str(model.path)

    def session_options(self, options: dict[str, Any]):
        ort = _ort()
        so = ort.SessionOptions()
        level = str(options.get("graph_optimization_level", "all")).lower()
        if level not in _OPT_LEVELS:
            raise UsageError(f"onnxruntime: unknown graph_optimization_level '{level}'",
                             hint=f"choose one of {', '.join(_OPT_LEVELS)}")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level])
        if options.get("threads"):
            so.intra_op_num_threads = int(options["threads"])
        if options.get("inter_op_threads"):
            so.inter_op_num_threads = int(options["inter_op_threads"])
        # errors only (fatal only when quiet, `portarun` without -v); warnings are reported through provenance
        so.log_severity_level = 4 if native_logs_quiet() else 3
        for key, value in dict(options.get("session_config") or {}).items():
            so.add_session_config_entry(str(key), str(value))
        if options.get("matmulnbits_accuracy_level") is not None:
            so.add_session_config_entry(ACCURACY_LEVEL_KEY, str(int(options["matmulnbits_accuracy_level"])))
        return so

    def _lower(self, model: Model, precision: Precision, options: dict[str, Any]) -> tuple[Model, dict[str, Any]]:
        """Apply ``lower_int4``; return the model to run and what to report about int4 MatMuls."""
        level = options.get("matmulnbits_accuracy_level")
        configured = dict(options.get("session_config") or {}).get(ACCURACY_LEVEL_KEY)
        if level is not None and not 0 <= int(level) <= 4:
            raise UsageError(f"onnxruntime: matmulnbits_accuracy_level must be 0-4, got {level}",
                             hint="0 or 1: fp32 (exact), 2: fp16, 3: bf16, 4: int8 activations")
        lower = {}
        for key in ("lower_int4", "lower_int8"):
            lower[key] = str(options.get(key) or "none").lower()
            if lower[key] not in ("none", "matmulnbits"):
                raise UsageError(f"onnxruntime: unknown {key} '{lower[key]}'", hint="choose matmulnbits or none")
        bits = ((4,) if lower["lower_int4"] == "matmulnbits" and precision is Precision.INT4_WEIGHT else ()) + \
               ((8,) if lower["lower_int8"] == "matmulnbits" and precision in (Precision.INT8_WEIGHT,
                                                                              Precision.INT4_WEIGHT) else ())
        if precision not in (Precision.INT4_WEIGHT, Precision.INT8_WEIGHT):
            return model, {}  # the accuracy level only governs weight-only MatMuls (ORT fuses int8 ones too)
        effective = level if level is not None else configured
        details: dict[str, Any] = {
            ACCURACY_LEVEL_KEY: str(effective) if effective is not None else "4 (ORT default: int8 activations)",
            **{key: value for key, value in lower.items() if key == "lower_int4" or value != "none"},
        }
        if bits:
            from .lowering import lower_weight_matmuls

            # without an explicit level, lowered nodes compute like ORT's own fusion does (its default, 4)
            lowered, count = lower_weight_matmuls(model.proto, 4 if effective is None else int(effective), bits)
            details["matmulnbits_nodes"] = count
            model = Model.from_proto(lowered, name=model.name, check=False)
        return model, details

    def _prepare(self, model: Model, precision: Precision) -> Model:
        if precision is not Precision.FP16:
            return model
        try:
            from onnxruntime.transformers.float16 import convert_float_to_float16
        except ImportError as exc:  # pragma: no cover - ships with every onnxruntime wheel
            raise UnsupportedError(f"onnxruntime fp16 conversion is unavailable: {exc}", backend=self.name) from None
        converted = convert_float_to_float16(model.proto, keep_io_types=True, disable_shape_infer=False)
        return Model.from_proto(converted, name=model.name, check=False)

    def choose_providers(self, target: Target, precision: Precision, options: dict[str, Any]) -> ExecutionProviderChoice:
        cache_dir = backend_cache_dir(self.name, options.get("cache_dir"))
        return choose_providers(target, set(_ort().get_available_providers()), precision,
                                dict(options.get("provider_options") or {}), cache_dir)

    def create_session(self, source: bytes | str, so, choice: ExecutionProviderChoice, target: Target, what: str):
        """An InferenceSession on ``choice``'s EPs; SDK failures and a silent fallback are CompileErrors."""
        try:
            session = _ort().InferenceSession(source, sess_options=so, providers=choice.providers,
                                              provider_options=choice.provider_options)
        except Exception as exc:
            raise CompileError(f"onnxruntime could not create a session for {what} on {target}: {first_line(exc)}",
                               backend=self.name) from exc
        actual = session.get_providers()
        if choice.providers[0] not in actual:
            raise CompileError(
                f"onnxruntime was asked for {choice.providers[0]} on {target} but created the session with "
                f"{', '.join(actual)}: refusing the silent fallback", backend=self.name,
                hint="check the EP's runtime libraries (CUDA, cuDNN, TensorRT, ROCm) are installed")
        return session

    def _compile(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Executable:
        choice = self.choose_providers(target, precision, options)
        prepared = self._prepare(model, precision)
        prepared, lowering = self._lower(prepared, precision, options)
        so = self.session_options(options)
        session = self.create_session(self.model_source(prepared), so, choice, target, f"'{model.name}'")
        provenance = Provenance(
            backend=self.name, sdk_version=_ort().__version__, target=str(target),
            device=cpu_name() if target.device == "cpu" else f"{target.device} ({choice.providers[0]})",
            precision=precision.value, providers=tuple(session.get_providers()),
            details={
                "graph_optimization_level": str(options.get("graph_optimization_level", "all")),
                "intra_op_threads": so.intra_op_num_threads or "default",
                "provider_options": choice.provider_options[0],
                "session_config": dict(options.get("session_config") or {}),
                **lowering,
            },
        )
        stored = dict(options)
        stored.pop("cache_dir", None)
        return OnnxRuntimeExecutable(session, choice, prepared, backend=self, model=model, target=target,
                                     precision=precision, provenance=provenance, options=stored)

    def _load_payload(self, payload_dir: Path, source_model: Model, manifest: Manifest,
                      target: Target) -> Executable:
        options = manifest.options
        precision = manifest.precision
        choice = self.choose_providers(target, precision, options)
        # The payload is already optimized for this EP and hardware: do not optimize again.
        so = self.session_options({**options, "graph_optimization_level": "disable"})
        payload = payload_dir / manifest.extras.get("optimized_model", OPTIMIZED_MODEL)
        session = self.create_session(str(payload), so, choice, target, f"artifact '{manifest.path}'")
        provenance = Provenance(**{**manifest.provenance, "providers": tuple(session.get_providers())})
        provenance.details = {**provenance.details, "loaded_from": str(manifest.path)}
        return OnnxRuntimeExecutable(session, choice, payload, backend=self, model=source_model, target=target,
                                     precision=precision, provenance=provenance, options=options)


__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeExecutable"]
