"""The XLA backend: ONNX lowered to JAX, compiled by XLA for CPUs, GPUs and TPUs.

Importing this module imports neither JAX nor the op lowerings; they load on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portarun.plugin import (
    ArtifactIncompatibleError, Backend, CompileError, Device, Executable, Manifest, Model, Precision, Provenance,
    Support, Tails, Target, first_line, quantization_support,
)

from . import jaxenv

class XlaExecutable(Executable):
    def __init__(self, program, **kwargs: Any):
        super().__init__(**kwargs)
        self.program = program

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run_tails(feeds, {})

    def _run_tails(self, feeds: dict[str, np.ndarray], tails: Tails) -> dict[str, np.ndarray]:
        # the program cuts the tails itself, so XLA never writes what the caller drops
        program = self.program
        before = program.stats.compile_count + len(program.stats.eager)
        outputs = program.run(feeds, tails)
        if program.stats.compile_count + len(program.stats.eager) != before:
            self._update_provenance()
        return outputs

    def _update_provenance(self) -> None:
        stats = self.program.stats
        details = self.provenance.details
        details["compile_count"] = stats.compile_count
        details["compile_seconds_total"] = round(stats.compile_seconds, 4)
        details["signatures"] = list(stats.signatures)
        if stats.eager:
            details["eager"] = list(stats.eager)

    def compile_for(self, feeds: dict[str, np.ndarray]) -> float:
        """Compile for the shapes of ``feeds`` without running; returns the seconds it took (0 if cached)."""
        arrays, _ = self.program._bucketed(self.program.encode_feeds(feeds))
        before = self.program.stats.compile_seconds
        self.program.compiled_for(arrays)
        self._update_provenance()
        return self.program.stats.compile_seconds - before

    def _save_payload(self, payload_dir: Path) -> dict[str, Any]:
        from .artifact import save_exports

        return save_exports(self.program, payload_dir)


class XlaBackend(Backend):
    name = "xla"
    description = "ONNX lowered to JAX and compiled by XLA (CPU, NVIDIA/AMD GPU, TPU)"
    precisions = (Precision.FP32, Precision.BF16, Precision.FP16, Precision.INT8, Precision.INT8_WEIGHT,
                  Precision.INT4_WEIGHT)
    install_hint = jaxenv.INSTALL_HINT
    default_device = "cpu"
    device_kinds = ("cpu", "gpu", "tpu")
    compiles_per_shape = True  # one XLA program per input-shape signature
    options = {
        "jit": "True (default): one XLA program per input-shape signature; False: run op by op (no compile)",
        "bucket": "dict of symbolic dim -> 'pow2' or a list of sizes: pad those dims up and slice outputs "
                  "(only valid when padding cannot change the kept results, e.g. {'batch': 'pow2'})",
        "weight_layout": "'nk' (default): store constant MatMul/Gemm weights transposed [N, K]; 'kn': as written",
        "quantized_matmul": "'auto' (default): 'native' on CPUs (else 'int8dot' where it cannot be built), "
                            "'direct' elsewhere; the form of a fused DequantizeLinear->MatMul ('native': portarun's "
                            "CPU kernel, built on first use with the C++ compiler, weights read once; float activations "
                            "(4-bit: as two 16-bit digits per block, to 2^-31 of its largest value); "
                            "'int8dot': float activations as 3 int8 digits in one integer dot; 'chunked': scan "
                            "over cache-sized dequantized chunks; 'direct': one float dot with the scales after it)",
    }

    def sdk_version(self) -> str:
        return jaxenv.jax_module().__version__

    def devices(self) -> list[Device]:
        found = []
        for kind in self.device_kinds:
            devices = jaxenv.devices(kind)
            for index, device in enumerate(devices):
                # a kind with one device is that kind's target as users type it (xla:cpu, not xla:cpu:0)
                found.append(Device(self.name, kind, index if len(devices) > 1 else None,
                                    description=f"{device.device_kind} ({device.platform})"))
        if not found:
            raise self.unavailable("JAX found no devices")
        return found

    def device_hint(self, device: str) -> str | None:
        if device == "gpu":
            return "pip install 'jax[cuda12]' (NVIDIA) or the ROCm jax plugin (AMD)"
        if device == "tpu":
            return "pip install 'jax[tpu]' on a TPU VM"
        return self.install_hint

    def jax_device(self, target: Target):
        devices = jaxenv.devices(target.device or self.default_device)
        return devices[target.index or 0]

    def _supports(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Support:
        # a quantized model also runs with bf16/fp16 activations around its int8/int4 weights
        carried = quantization_support(model, precision, quantized_runs_at=(Precision.BF16, Precision.FP16))
        if not carried:
            return carried
        # Every missing op, at once, before anything is traced; the prepared graph goes on to _compile.
        from .lower import model_graph

        graph = model_graph(model.proto)
        if graph.missing:
            missing = sorted(graph.missing)
            return Support.no(f"no XLA lowering for op type(s) {', '.join(missing)}", missing_ops=tuple(missing),
                              hint="run it on another backend (e.g. onnxruntime:cpu), or add the op(s) under "
                                   "backends/xla/ops/")
        refused = string_input_refusal(model, graph)
        if refused:
            return Support.no(refused, hint="run it on onnxruntime:cpu, or encode the strings before the model")
        return Support.yes(prepared=graph)

    def _compile(self, model: Model, target: Target, precision: Precision, options: dict[str, Any],
                 prepared=None) -> Executable:
        return self._build(model, target, precision, options, precompile=True, graph=prepared)

    def _build(self, model: Model, target: Target, precision: Precision, options: dict[str, Any], *,
               precompile: bool, graph=None) -> XlaExecutable:
        from .program import Program, static_shapes
        from .quant.matmul import activations_for
        from .quant.native import native_kernel_detail

        jax = jaxenv.jax_module()
        device = self.jax_device(target)
        program = Program(model, device, precision, options, graph)
        program.check_bucketing()
        versions = jaxenv.versions()
        provenance = Provenance(
            backend=self.name, sdk_version=jax.__version__, target=str(target),
            device=f"{device.device_kind} ({device.platform}:{device.id})",
            precision=precision.value, providers=(f"xla:{device.platform}",),
            details={**versions, "platform": device.platform, "device_kind": device.device_kind,
                     "jit": program.jit, "weight_layout": program.weight_layout,
                     "quantized_matmul": program.quantized_matmul,
                     # the kernel's build ('avx512 (g++ ...)'), or why 'auto' could not use it
                     "quantized_matmul_kernel": native_kernel_detail(device.platform) if precision.is_quantized
                     else None,
                     # what the fused quantized MatMuls do with activations; a float program has none
                     "quantized_matmul_activations": activations_for(program.quantized_matmul)
                     if precision.is_quantized else None,
                     "bucket": {k: v for k, v in program.bucket.items()},
                     "weights_on_device_bytes": program.weight_bytes,
                     "rewrites": program.rewrites, "compile_count": 0, "compile_seconds_total": 0.0},
        )
        executable = XlaExecutable(program, backend=self, model=model, target=target, precision=precision,
                                   provenance=provenance, options=options)
        shapes = static_shapes(model)
        if precompile and shapes is not None and program.jit:
            feeds = {spec.name: np.zeros(shape, spec.dtype) for spec, shape in zip(model.inputs, shapes)}
            try:
                executable.compile_for(feeds)
            except Exception as exc:
                raise CompileError(f"xla failed to compile '{model.name}' for {target}: {first_line(exc)}",
                                   backend=self.name) from exc
        return executable

    def artifact_incompatibility(self, manifest: Manifest) -> str | None:
        version = self.sdk_version()
        if manifest.sdk_version != version:
            return f"artifact was compiled with jax {manifest.sdk_version}, this machine has jax {version}"
        form = manifest.extras.get("quantized_matmul")
        if form is not None:  # its programs read weights in that form's layout (native: a kernel built here)
            from .quant.matmul import form_for

            try:
                form_for(str(form), str(manifest.extras.get("platform", "cpu")))
            except ValueError as exc:
                return f"its programs were built with quantized_matmul={form!r}, and here {exc}"
        return None

    def _load_payload(self, payload_dir: Path, source_model: Model, manifest: Manifest,
                      target: Target) -> Executable:
        from .artifact import load_exports

        payload = manifest.extras
        device = self.jax_device(target)
        wanted = payload.get("device_kind")
        if wanted is not None and wanted != device.device_kind:
            raise ArtifactIncompatibleError(f"artifact '{manifest.path}' was compiled for {wanted}, "
                                            f"this device is {device.device_kind}",
                                            hint="load with rebuild=True to recompile")
        options = manifest.options
        self.check_options(options)
        if payload.get("quantized_matmul"):  # 'auto' could resolve otherwise here; the stored layout rules
            options = {**options, "quantized_matmul": payload["quantized_matmul"]}
        # the stored programs replace tracing and lowering: compile nothing here
        executable = self._build(source_model, target, manifest.precision, options, precompile=False)
        loaded = load_exports(executable.program, payload_dir, payload)
        executable.provenance.details["loaded_from"] = str(manifest.path)
        executable.provenance.details["loaded_signatures"] = loaded
        return executable


def missing_ops(model: Model) -> list[str]:
    """Op types in ``model`` with no XLA lowering, all of them (subgraphs and functions included)."""
    from .lower import model_graph

    return sorted(model_graph(model.proto).missing)


def string_input_refusal(model: Model, graph=None) -> str | None:
    """Why a string input cannot enter the program (it feeds an op that cannot read codes), or None."""
    strings = [vi.name for vi in model.proto.graph.input
               if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == 8]  # TensorProto.STRING
    if not strings:
        return None
    from .hostvalues import StringInputError, string_vocabulary
    from .lower import model_graph

    graph = graph if graph is not None else model_graph(model.proto)
    for name in strings:
        try:
            string_vocabulary(graph, name)
        except StringInputError as exc:
            return str(exc)
    return None


__all__ = ["XlaBackend", "XlaExecutable", "missing_ops", "string_input_refusal"]
