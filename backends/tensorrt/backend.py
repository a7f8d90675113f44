"""TensorRT backend (``tensorrt:cuda[:N]``): ONNX -> TensorRT engine, cached, run through the tensor API.

Written against TensorRT 10's documented Python API and never run on hardware in this
repository's CI (no NVIDIA GPU there): see tests/backends/tensorrt for what is tested
without TensorRT and which tests need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from portarun.plugin import (
    Backend, CompileError, Device, Executable, Manifest, Model, PortarunError, Precision, Provenance, Support, Target,
    UnsupportedError, backend_cache_dir, quantization_support,
)

from .builder import BuildSettings, build_engine
from .convert import to_fp16
from .cache import EngineCache, EngineKey, engine_key
from .cuda import GpuInfo, load_cuda
from .precision import plan_precision
from .profiles import derive_profile
from .qdq import qdq_problems
from .runtime import ENGINE_FILE, TIMING_FILE, EngineRunner, TensorRtExecutable
from .sdk import INSTALL_HINT, import_tensorrt, make_logger


class TensorRtBackend(Backend):
    name = "tensorrt"
    description = "NVIDIA TensorRT 10: engines built from ONNX, cached per GPU and TensorRT version"
    precisions = (Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8, Precision.INT8_WEIGHT,
                  Precision.INT4_WEIGHT)
    install_hint = INSTALL_HINT
    default_device = "cuda"
    device_kinds = ("cuda",)
    options = {
        "shapes": "optimization profile per input: x:1x3x224x224,8x3x224x224,32x3x224x224 (min,opt,max; ';' between "
                  "inputs) or {'x': [min, opt, max]}",
        "dim_ranges": "profile per symbolic dim: batch:1,8,32;seq:1,128,512 (default for any dim: 1,1,256)",
        "workspace_mb": "builder workspace memory pool limit in MiB (default: TensorRT's, the device memory)",
        "builder_optimization_level": "0-5 (default 3); higher builds longer for faster engines",
        "tf32": "allow TF32 in fp32 layers (default false: fp32 means fp32)",
        "engine_cache": "reuse and store engines in the cache folder (default true)",
        "cache_dir": "folder for engines and timing caches (default: <portarun cache>/tensorrt)",
    }

    def __init__(self) -> None:
        self._cuda = None

    # -- facts ---------------------------------------------------------------------------
    def sdk_version(self) -> str:
        return import_tensorrt().__version__

    def cuda(self) -> Any:
        if self._cuda is None:
            self._cuda = load_cuda()
        return self._cuda

    def devices(self) -> list[Device]:
        trt = import_tensorrt()
        cuda = self.cuda()
        devices = []
        for index in range(cuda.device_count()):
            gpu = cuda.gpu(index)
            devices.append(Device(self.name, "cuda", index, description=f"{gpu.describe()}, TensorRT {trt.__version__}"))
        if not devices:
            raise self.unavailable("no NVIDIA GPU visible to CUDA")
        return devices

    def gpu(self, target: Target) -> GpuInfo:
        return self.cuda().gpu(target.index or 0)

    def _supports(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Support:
        carried = quantization_support(
            model, precision, float_model_hint="; TensorRT takes quantized precisions only as explicit Q/DQ "
                                               "(its implicit INT8 calibration is deprecated)")
        if not carried:
            return carried
        if precision.is_quantized:
            problems = qdq_problems(model)
            if problems:
                return Support.no("TensorRT cannot take this Q/DQ graph: " + "; ".join(problems))
        try:
            plan_precision(precision, self.sdk_version())
        except UnsupportedError as exc:
            return Support.no(exc.message)
        if precision is Precision.BF16:
            gpu = self.gpu(target)
            if gpu.major < 8:
                return Support.no(f"bf16 needs an Ampere or newer GPU (sm_80+); {gpu.describe()} is not")
        return Support.yes()

    # -- compile ---------------------------------------------------------------------------
    def cache_root(self, options: dict[str, Any]) -> Path:
        return backend_cache_dir(self.name, options.get("cache_dir"))

    def _compile(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Executable:
        trt = import_tensorrt()
        cuda = self.cuda()
        gpu = self.gpu(target)
        profile = derive_profile(model.inputs, options.get("shapes"), options.get("dim_ranges"))
        settings = BuildSettings.from_options(options)
        plan = plan_precision(precision, trt.__version__, tf32=settings.tf32)
        key = engine_key(model.sha256, trt.__version__, gpu, precision.value, profile,
                         {**settings.to_dict(), **plan.to_dict()})
        cache = EngineCache(self.cache_root(options))
        use_cache = bool(options.get("engine_cache", True))
        logger = make_logger(trt)
        timing = cache.load_timing(trt.__version__, gpu)
        engine = cache.load_engine(key) if use_cache else None
        runner = None
        if engine is not None:
            try:
                runner = EngineRunner(trt, cuda, engine, logger, gpu.index)
            except CompileError:
                engine = None  # a cached engine TensorRT no longer accepts (driver update): build afresh
        cache_hit = runner is not None
        if runner is None:
            cuda.set_device(gpu.index)
            source = to_fp16(model) if plan.convert_to == "fp16" else model
            engine, timing = build_engine(trt, source, plan, profile, settings, logger, timing)
            if use_cache:
                cache.store_engine(key, engine)
            cache.store_timing(trt.__version__, gpu, timing)
            runner = EngineRunner(trt, cuda, engine, logger, gpu.index)
        self._check_io(model, runner)
        provenance = Provenance(
            backend=self.name, sdk_version=trt.__version__, target=str(target), device=gpu.describe(),
            precision=precision.value, providers=("tensorrt", f"cuda via {cuda.name}"),
            details={"engine_key": key.digest, "engine_cache": "hit" if cache_hit else "built",
                     "compute_capability": gpu.compute_capability, "profiles": key.to_dict()["profiles"],
                     **plan.to_dict(), **settings.to_dict()},
        )
        stored = {k: v for k, v in options.items() if k != "cache_dir"}
        return TensorRtExecutable(runner, engine, timing, key, profile, backend=self, model=model, target=target,
                                  precision=precision, provenance=provenance, options=stored)

    def _check_io(self, model: Model, runner: EngineRunner) -> None:
        want_in, want_out = {s.name for s in model.inputs}, {s.name for s in model.outputs}
        if set(runner.inputs) != want_in or not want_out <= set(runner.outputs):
            runner.close()
            raise CompileError(f"the TensorRT engine's I/O ({', '.join(runner.inputs)} -> {', '.join(runner.outputs)}) "
                               f"does not match the model's", backend=self.name,
                               hint="clear the engine cache (--option engine_cache=false) and rebuild")

    # -- artifacts ---------------------------------------------------------------------------
    def artifact_incompatibility(self, manifest: Manifest) -> str | None:
        key = dict(manifest.extras.get("engine_key") or {})
        if not key:
            return "artifact holds no TensorRT engine key"
        version = self.sdk_version()
        if key.get("trt_version") != version:
            return (f"its engine was built with TensorRT {key.get('trt_version')}, this machine has TensorRT {version} "
                    "(engines are specific to the TensorRT version)")
        gpu = self.gpu(manifest.target)
        if key.get("compute_capability") != gpu.compute_capability:
            return (f"its engine was built for {key.get('gpu_name')} (compute capability {key.get('compute_capability')}), "
                    f"this machine's cuda:{gpu.index} is {gpu.name} (compute capability {gpu.compute_capability})")
        return None

    def _load_payload(self, payload_dir: Path, source_model: Model, manifest: Manifest,
                      target: Target) -> Executable:
        trt = import_tensorrt()
        cuda = self.cuda()
        gpu = self.gpu(target)
        payload = manifest.extras
        model = source_model
        engine = (payload_dir / payload.get("engine", ENGINE_FILE)).read_bytes()
        timing_file = payload_dir / payload.get("timing_cache", TIMING_FILE)
        timing = timing_file.read_bytes() if timing_file.is_file() else None
        key = EngineKey.from_dict(payload["engine_key"])
        profile = derive_profile(model.inputs, shapes=payload["profiles"])
        logger = make_logger(trt)
        try:
            runner = EngineRunner(trt, cuda, engine, logger, gpu.index)
        except PortarunError as exc:
            raise CompileError(f"cannot load the TensorRT engine in '{manifest.path}': {exc.message}", backend=self.name,
                               hint="recompile, or load with rebuild=True (--rebuild)") from exc
        self._check_io(model, runner)
        stored = manifest.provenance
        provenance = Provenance(**{**stored, "providers": tuple(stored["providers"])})
        provenance.details = {**provenance.details, "loaded_from": str(manifest.path), "engine_cache": "artifact"}
        if key.gpu_name != gpu.name:  # same architecture, another model: TensorRT runs it, tuned for the other
            provenance.details["built_on"] = key.gpu_name
            provenance.device = gpu.describe()
        return TensorRtExecutable(runner, engine, timing, key, profile, backend=self, model=model, target=target,
                                  precision=manifest.precision, provenance=provenance, options=manifest.options)


__all__ = ["TensorRtBackend", "TensorRtExecutable"]
