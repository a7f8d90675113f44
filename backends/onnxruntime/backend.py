"""ONNX Runtime: the CPU EP, and the CUDA, TensorRT, MIGraphX/ROCm and OpenVINO EPs by target.

``onnxruntime:cuda`` asks for the CUDA EP and nothing else: if this onnxruntime
build lacks it the compile fails with the package to install, and if ORT
quietly creates the session on the CPU anyway (it does that when an EP fails to
initialize) the compile fails too. Nodes an EP cannot take still run on the
CPU EP inside the session, as ORT always does; ``provenance.providers`` lists
the EPs the session really has.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from portarun.plugin import (
    PROTOBUF_LIMIT, Backend, CompileError, Device, Executable, Manifest, Model, Precision, Provenance, Support,
    Target, UnsupportedError, UsageError, backend_cache_dir, cpu_name, first_line, import_sdk,
    native_logs_verbose, payload_file, quantization_support,
)

from .providers import EP_BY_DEVICE, ExecutionProviderChoice, choose_providers

INSTALL_HINT = "pip install 'portarun[onnxruntime]'"
ACCURACY_LEVEL_KEY = "session.qdq_matmulnbits_accuracy_level"
# MatMulNBits accuracy level per activation mode. Float: level 1 (fp32 compute, exact like 0; measured
# in tools/bench_decode.py); int8-dynamic: 4, int8 activations per block (VNNI/AMX integer dot products)
ACTIVATION_LEVELS = {"float": 1, "int8-dynamic": 4}
DISABLE_QDQ_FUSION_KEY = "session.disable_quant_qdq"  # ORT then folds constant DQ weights to float instead
INT4_LOWERINGS = ("digits", "matmulnbits", "none")
INT8_LOWERINGS = ("digits", "fold", "matmulnbits", "none")


def _default_lowering(key: str, target: Target, activations: str, level_chosen: bool) -> str:
    """On the CPU with float activations: the digits forms (int4: MatMulNBits at level 4 over 2 digits per
    block, unless the user chose a MatMulNBits level, which then governs; int8: MatMulInteger over 3 digits);
    with int8-dynamic ones plain MatMulNBits. Other EPs: left to ORT."""
    if target.device != "cpu":
        return "none"
    if activations == "float" and (key == "lower_int8" or not level_chosen):
        return "digits"
    return "matmulnbits"


def _split_int4_activations(proto, ranks: dict[str, int]) -> dict[str, Any]:
    """Run the lowered int4 MatMulNBits over their activations' 2 digits (lowering_int4_digits.py); what
    provenance says about it."""
    from .lowering_int4_digits import ACCURACY_LEVEL, ACTIVATIONS, DIGITS_FORM, FORM, split_int4_activations

    rewritten, left = split_int4_activations(proto, ranks)
    details: dict[str, Any] = {"int4_digit_matmul_nodes": rewritten}
    if rewritten:
        details["activations"] = ACTIVATIONS
        details["int4_matmuls"] = f"{FORM}: MatMulNBits at accuracy level {ACCURACY_LEVEL} over the activations " \
                                  f"as {DIGITS_FORM} (~2^-16 of each block's max; not activation quantization)"
    if left:
        details["int4_exact_matmul_nodes"] = left  # a short last block: fp32 compute at the float level
    return details


_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
OPTIMIZED_MODEL = "optimized.onnx"


# ORT prints its own coloured "[E:onnxruntime:...]" lines for errors portarun already reports as one
# clear line. They are silenced (fatal only) unless PORTARUN_SDK_LOG asks for them back:
# 1 / warning = ORT's own default (its error lines included), info, verbose.
SDK_LOG_ENV = "PORTARUN_SDK_LOG"
_SEVERITY = {"0": 4, "": 4, "fatal": 4, "1": 2, "on": 2, "warning": 2, "error": 2, "info": 1, "verbose": 0}
_logging_set = False


def sdk_log_severity() -> int:
    """ORT's minimum log severity: PORTARUN_SDK_LOG when set; else ORT's own default under `portarun -v`;
    else fatal only."""
    explicit = os.environ.get(SDK_LOG_ENV, "").strip().lower()
    if explicit:
        return _SEVERITY.get(explicit, 2)
    return 2 if native_logs_verbose() else 4


def _ort():
    global _logging_set
    ort = import_sdk("onnxruntime", backend="onnxruntime", hint=INSTALL_HINT)
    if not _logging_set:
        ort.set_default_logger_severity(sdk_log_severity())
        _logging_set = True
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
        "lower_int4": "int4-weight: 'digits' (default on the CPU with float activations: MatMulNBits at accuracy "
                      "level 4 over each activation as 2 int8 digits per block, ~2^-16 of the block's max) or "
                      "'matmulnbits' (MatMulNBits at the activations' level: fp32 compute, exact, slower) rewrite "
                      "blocked DQ+MatMul, and DQ+Gather as GatherBlockQuantized; 'none' leaves the DQ nodes to ORT "
                      "(it fuses the MatMuls, dequantizes whole embedding tables every run)",
        "lower_int8": "int8-weight / int4-weight, per-channel int8 DQ+MatMul: 'digits' (default on the CPU with float "
                      "activations: one MatMulInteger over the activations' 3 int8 digits, fp32-accurate), 'fold' "
                      "(dequantized once at load, fp32 MatMul), 'matmulnbits' (8-bit MatMulNBits; the default with "
                      "int8-dynamic activations) or 'none' (left to ORT); int8 DQ+Gather become GatherBlockQuantized "
                      "unless 'none'",
        "activations": "weight-only precisions: 'float' (default: activations stay fp32, the artifact's numbers) or "
                       "'int8-dynamic' (MatMulNBits quantizes activations to int8 per block, accuracy level 4: "
                       "faster on VNNI/AMX CPUs, a different precision, reported as such)",
        "matmulnbits_accuracy_level": "0-4: expert override of how MatMulNBits computes (0/1 fp32, 2 fp16, 3 bf16, "
                                      "4 int8 activations); default from 'activations'",
    }
    # fast on the CPU, and exact once int4 weight-only MatMuls keep float activations (ORT quantizes them
    # to int8 by default) and int8 ones are folded to fp32 (the digits form is ~2^-21 close, not exact):
    # the quantizer's evaluator
    exact_evaluation_options = {"session_config": {ACCURACY_LEVEL_KEY: "0"}, "lower_int8": "fold",
                                "lower_int4": "matmulnbits"}

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
        so.log_severity_level = sdk_log_severity()  # portarun reports errors itself; warnings go to provenance
        for key, value in dict(options.get("session_config") or {}).items():
            so.add_session_config_entry(str(key), str(value))
        if options.get("matmulnbits_accuracy_level") is not None:
            so.add_session_config_entry(ACCURACY_LEVEL_KEY, str(int(options["matmulnbits_accuracy_level"])))
        return so

    def _lower(self, model: Model, target: Target, precision: Precision,
               options: dict[str, Any]) -> tuple[Model, dict[str, Any], dict[str, str]]:
        """The model to run, what to report about weight-only MatMuls, and session config entries to add.

        Weight-only precisions keep float activations unless ``activations='int8-dynamic'`` says otherwise
        (ORT's own default, accuracy level 4, quantizes them silently: not here). On the CPU the int4 DQ+MatMul
        and the DQ+Gather pairs are lowered to MatMulNBits / GatherBlockQuantized by default (ORT left alone
        dequantizes a whole embedding table every step, which made int4 decode 0.29x of fp32), and int8
        DQ+MatMul to one MatMulInteger over the float activations' int8 digits (lowering_int8.py)."""
        level = options.get("matmulnbits_accuracy_level")
        configured = dict(options.get("session_config") or {}).get(ACCURACY_LEVEL_KEY)
        if level is not None and not 0 <= int(level) <= 4:
            raise UsageError(f"onnxruntime: matmulnbits_accuracy_level must be 0-4, got {level}",
                             hint="0 or 1: fp32 (exact), 2: fp16, 3: bf16, 4: int8 activations")
        activations = str(options.get("activations") or "float").lower()
        if activations not in ACTIVATION_LEVELS:
            raise UsageError(f"onnxruntime: unknown activations '{activations}'",
                             hint=f"choose {' or '.join(ACTIVATION_LEVELS)}")
        effective = int(level if level is not None else configured if configured is not None
                        else ACTIVATION_LEVELS[activations])
        if effective == ACTIVATION_LEVELS["int8-dynamic"]:
            activations = "int8-dynamic"
        lower = {}
        level_chosen = level is not None or configured is not None
        for key, choices in (("lower_int4", INT4_LOWERINGS), ("lower_int8", INT8_LOWERINGS)):
            lower[key] = str(options.get(key) or _default_lowering(key, target, activations, level_chosen)).lower()
            if lower[key] not in choices:
                raise UsageError(f"onnxruntime: unknown {key} '{lower[key]}'", hint=f"choose {' or '.join(choices)}")
        if lower["lower_int4"] == "digits" and (level_chosen or activations != "float"):
            raise UsageError("onnxruntime: lower_int4='digits' keeps float activations at its own accuracy level (4, "
                             "over the digits); it cannot take an accuracy level or int8-dynamic activations",
                             hint="drop matmulnbits_accuracy_level / activations, or use lower_int4='matmulnbits'")
        if not precision.is_weight_only:
            return model, {}, {}  # the accuracy level only governs weight-only MatMuls (ORT fuses int8 ones too)
        int4 = (4,) if lower["lower_int4"] in ("digits", "matmulnbits") and precision is Precision.INT4_WEIGHT else ()
        int4_digits = bool(int4) and lower["lower_int4"] == "digits"
        # 8-bit MatMulNBits with float activations (levels 0-3) runs ORT's slow generic path: 50-100x a
        # fp32 MatMul, measured on AVX-512 (tools/bench_decode.py). With float activations int8 MatMuls run
        # as one integer MatMul over the activations' int8 digits ('digits', lowering_int8.py) or are folded
        # once into a fp32 weight ('fold': exact, fp32 speed). int8 embedding tables become
        # GatherBlockQuantized (one row read per token) unless lower_int8 is 'none'.
        int8_mode = lower["lower_int8"]
        int8_gathers = (8,) if int8_mode != "none" else ()
        matmul_bits = int4 + ((8,) if int8_mode == "matmulnbits" else ())
        details: dict[str, Any] = {ACCURACY_LEVEL_KEY: str(effective), "activations": activations, **lower}
        config = {} if configured is not None or level is not None else {ACCURACY_LEVEL_KEY: str(effective)}
        proto = model.proto
        if int8_mode == "digits":
            from .lowering_int8 import ACTIVATIONS, DIGITS_FORM, FORM, lower_int8_digit_matmuls

            proto, digit_count = lower_int8_digit_matmuls(proto)
            details["digit_matmul_nodes"] = digit_count
            if digit_count:
                details["int8_matmuls"] = f"{FORM}: MatMulInteger over the activations as {DIGITS_FORM} " \
                                          "(~2^-21 of each row's max; not activation quantization)"
                if activations == "float" and precision is Precision.INT8_WEIGHT:
                    details["activations"] = ACTIVATIONS  # int4-weight: its int4 MatMuls' activations are plain
        if int8_mode in ("fold", "digits"):  # what digits did not take (none, or a form it skips) folds to fp32
            details.setdefault("int8_matmuls", "dequantized once at load, fp32 MatMul (lower_int8='digits' runs "
                                               "them as integer MatMuls, 'int8-dynamic' with int8 activations)")
            config[DISABLE_QDQ_FUSION_KEY] = "1"
        if matmul_bits or int4 + int8_gathers:
            from .lowering import lower_weight_matmuls
            from .lowering_int4_digits import activation_ranks

            ranks = activation_ranks(proto) if int4_digits else {}  # before MatMulNBits hides the MatMuls
            # the digits lowering already made a copy of its own: rewrite that one in place
            proto, count = lower_weight_matmuls(proto, effective, matmul_bits, int4 + int8_gathers,
                                                copy=proto is model.proto)
            details["matmulnbits_nodes"] = count
            if int4_digits:
                details.update(_split_int4_activations(proto, ranks))
        if proto is not model.proto:
            model = Model.from_proto(proto, name=model.name, check=False)
        # ORT's own DQ+MatMul fusion (what is not lowered here) reads the level from the session config
        return model, details, config

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
        prepared, lowering, config = self._lower(prepared, target, precision, options)
        if config:  # kept in the options so that a saved artifact's session is made the same way
            options = {**options, "session_config": {**config, **dict(options.get("session_config") or {})}}
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
        payload = payload_file(payload_dir, manifest.extras.get("optimized_model", OPTIMIZED_MODEL))
        session = self.create_session(str(payload), so, choice, target, f"artifact '{manifest.path}'")
        provenance = Provenance(**{**manifest.provenance, "providers": tuple(session.get_providers())})
        provenance.details = {**provenance.details, "loaded_from": str(manifest.path)}
        return OnnxRuntimeExecutable(session, choice, payload, backend=self, model=source_model, target=target,
                                     precision=precision, provenance=provenance, options=options)


__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeExecutable"]
