"""``portarun.serve(model, target, ...)``: deploy a model on Ray Serve and get a handle with ``.url``.

Ray is imported here, on first use, so ``import portarun`` works without the ``serve`` extra.
When no Ray runtime is running, a small local one is started for this process (no dashboard,
usage statistics off) and stopped again by ``shutdown()``; a runtime the caller started or
joined (``ray_address``) is left running.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendUnavailableError, CompileError, UsageError
from ..types import Target
from .spec import ServeSpec, default_name

INSTALL_HINT = "pip install 'portarun[serve]'"


def import_ray_serve() -> Any:
    """``ray.serve``, or a one-line error that says which extra installs it."""
    try:
        from ray import serve
    except ImportError as exc:
        raise BackendUnavailableError(f"serving needs Ray Serve, which cannot be imported ({exc})",
                                      hint=INSTALL_HINT) from None
    return serve


@dataclass
class ServeHandle:
    """A running deployment: ``url`` is the server root (``url + '/v2/health/ready'``)."""

    name: str
    url: str
    host: str
    port: int
    _owns_ray: bool = False
    _owns_serve: bool = False
    _closed: bool = field(default=False, repr=False)

    def shutdown(self) -> None:
        """Delete the application; stop Serve and Ray too when ``portarun.serve`` started them."""
        if self._closed:
            return
        self._closed = True
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        if self._owns_serve:
            serve.shutdown()
        else:
            serve.delete(self.name)
        if self._owns_ray:
            ray.shutdown()

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM, then shut down (what ``portarun serve`` does)."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.shutdown()

    def __enter__(self) -> "ServeHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _source_of(model_or_artifact: Any) -> tuple[str | bytes, bool]:
    from ..artifact import is_artifact
    from ..model import Model

    if isinstance(model_or_artifact, Model):
        return model_or_artifact.serialized, False
    text = os.fspath(model_or_artifact)
    if is_artifact(text):
        return os.path.abspath(text), True
    from ..api import load

    load(text)  # fail here, in the caller, on a missing or invalid model rather than in every replica
    return (os.path.abspath(text) if os.path.exists(text) else text), False


# devices a replica needs a Ray GPU for (OpenVINO's "gpu" is an Intel GPU, which Ray does not count)
_RAY_GPU_DEVICES = ("cuda", "tensorrt", "rocm", "migraphx", "gpu")


def _precheck(spec: ServeSpec, *, local_devices: bool) -> Target:
    """What can be checked before deploying: Ray Serve hides a replica's own error behind
    "Failed to update the deployments", so a wrong target, precision or option is caught here.
    ``local_devices``: the replicas run on this machine, so the device must exist here.
    Returns the target the replicas will run."""
    from ..registry import get_backend, resolve_target
    from ..types import Precision

    if spec.is_artifact:
        from ..artifact import read_artifact

        manifest = read_artifact(spec.source)
        backend = get_backend(manifest.backend)
        reason = backend.artifact_incompatibility(manifest)
        if reason is not None:
            raise UsageError(f"cannot serve artifact '{spec.source}': {reason}",
                             hint="recompile it for this machine with `portarun compile`")
        return manifest.target
    target = resolve_target(spec.target)
    backend = get_backend(target.backend)
    if local_devices:
        target = backend.resolve_target(target)  # the device must exist here
    else:  # the replicas run elsewhere in the cluster; only fill in the default device
        target = Target(target.backend, target.device or backend.default_device, target.index)
    precision = Precision.parse(spec.precision)
    if precision not in backend.precisions:
        raise UsageError(f"{backend.name} does not support precision {precision}",
                         hint=f"supported: {', '.join(p.value for p in backend.precisions)}")
    backend.check_options(spec.options)
    return target


def _start_ray(ray_address: str | None, num_cpus: int | None) -> bool:
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network but loopback
    if ray_address:
        ray.init(address=ray_address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


def serve(model_or_artifact: Any, target: Target | str | None = None, precision: str = "fp32", *,
          name: str | None = None, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1,
          autoscale: tuple[int, int] | None = None, max_batch_size: int = 8, batch_wait_ms: float = 5.0,
          options: dict[str, Any] | None = None, ray_address: str | None = None, num_cpus: int | None = None,
          replica_cpus: float = 1.0) -> ServeHandle:
    """Serve a model (path, ``builtin:NAME``, ``Model``) or a compiled artifact over the Open Inference Protocol.

    ``replicas`` fixes the replica count; ``autoscale=(min, max)`` lets Ray Serve scale on load.
    ``max_batch_size=1`` turns dynamic batching off. Returns once the application answers.
    """
    serve_module = import_ray_serve()
    source, artifact = _source_of(model_or_artifact)
    if not artifact and target is None:
        raise UsageError("a model needs a target (e.g. onnxruntime:cpu); an artifact carries its own")
    if autoscale is not None and (autoscale[0] < 0 or autoscale[1] < max(1, autoscale[0])):
        raise UsageError(f"autoscale must be (min, max) with 0 <= min <= max and max >= 1, got {autoscale}")
    if replicas < 1:
        raise UsageError(f"replicas must be at least 1, got {replicas}")
    spec = ServeSpec(source=source, target=None if target is None else str(target), precision=str(precision),
                     name=name or default_name(model_or_artifact), options=dict(options or {}),
                     max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms, is_artifact=artifact)
    target_here = _precheck(spec, local_devices=not ray_address)
    from .app import build_application

    gpus = 1.0 if target_here.backend != "openvino" and target_here.device in _RAY_GPU_DEVICES else 0.0
    application = build_application(spec, replicas=replicas, autoscale=autoscale, num_cpus=replica_cpus,
                                     num_gpus=gpus)
    owns_ray = _start_ray(ray_address, num_cpus)
    owns_serve = False
    try:
        owns_serve = not _serve_running()
        if owns_serve:
            serve_module.start(http_options={"host": host, "port": port})
        serve_module.run(application, name=spec.name, route_prefix="/", blocking=False)
    except Exception as exc:
        handle = ServeHandle(spec.name, f"http://{host}:{port}", host, port, owns_ray, owns_serve)
        handle.shutdown()
        text = str(exc).strip().splitlines()
        raise CompileError(f"deploying '{spec.name}' on Ray Serve failed: {text[-1] if text else type(exc).__name__}",
                           hint="the replica's error is in Ray's serve logs (/tmp/ray/session_latest/logs/serve); "
                                "check the model compiles with `portarun compile`") from exc
    return ServeHandle(spec.name, f"http://{host}:{port}", host, port, owns_ray, owns_serve)


def _serve_running() -> bool:
    """Whether a Serve instance already runs in this cluster (then its HTTP host and port apply)."""
    from ray import serve

    # serve.status() answers an empty status, without starting Serve, when no controller runs
    return bool(serve.status().proxies)
