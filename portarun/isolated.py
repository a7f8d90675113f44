"""An Executable whose backend runs in a worker process: a crash or a hang cannot take the caller down.

``portarun.compile(..., isolate=True)`` (or ``timeout=SECONDS``) compiles the model inside a
``portarun.worker.IsolatedWorker`` and returns an ``IsolatedExecutable`` with the same interface.
Feeds go to the worker and outputs come back through its pipe (pickled numpy arrays). When the
worker dies (SIGSEGV, abort, ``os._exit``) the call raises ``CompileError`` / ``RunError`` naming the
signal; when a call overruns its timeout the worker is killed and the call raises
``CompileTimeoutError`` / ``RunTimeoutError``. Either way the next call starts a fresh worker and
compiles the model in it again before running.

Vendor SDKs cannot be interrupted inside a call, so a timeout always means a worker process.
Calls on one IsolatedExecutable are serialized (one pipe); use one per thread to overlap them.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Executable, Provenance
from .errors import (CompileError, CompileTimeoutError, PortarunError, RunError, RunTimeoutError)
from .model import PROTOBUF_LIMIT, Model
from .types import Precision, Target, TensorSpec
from .worker import IsolatedWorker, TaskOutcome

TIMEOUT_HINT = "raise the limit with timeout=SECONDS (CLI: --timeout SECONDS), or pass timeout=None for none"
CRASH_HINT = ("the backend crashed in the worker; the next call starts a fresh one. Run without isolation to "
              "debug it in-process, or try another target")

# -- inside the worker --------------------------------------------------------------------
_LIVE: dict[int, Executable] = {}
_HANDLES = itertools.count(1)


def _pack(exc: PortarunError) -> tuple:
    return (type(exc).__module__, type(exc).__name__, exc.message, exc.hint, getattr(exc, "backend", None))


def _unpack(packed: tuple) -> PortarunError:
    import importlib

    module, name, message, hint, backend = packed
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, PortarunError)):
        return RunError(message, backend=backend, hint=hint)
    error = cls.__new__(cls)
    PortarunError.__init__(error, message, hint=hint)
    if backend is not None or hasattr(cls, "backend"):
        error.backend = backend
    return error


def worker_compile(source: bytes | str, name: str, target: str, precision: str, options: dict) -> tuple:
    """Compile in the worker; returns ("ok", handle, inputs, outputs, provenance, precision, target) or
    ("raise", packed error). The model arrives ready for the backend (quantized already, when asked)."""
    from .registry import get_backend

    try:
        if isinstance(source, bytes):
            import onnx

            model = Model.from_proto(onnx.load_from_string(source), name=name, check=False)
        else:
            model = Model.load(source, check=False)
        model.name = name
        resolved = Target.parse(target)
        executable = get_backend(resolved.backend).compile(model, resolved, precision, **options)
    except PortarunError as exc:
        return ("raise", _pack(exc))
    return _keep(executable)


def _keep(executable: Executable, *extra: Any) -> tuple:
    handle = next(_HANDLES)
    _LIVE[handle] = executable
    return ("ok", handle, executable.inputs, executable.outputs, executable.provenance.to_dict(),
            executable.precision.value, str(executable.target), *extra)


def worker_load(path: str, target: str | None, rebuild: bool) -> tuple:
    """Load a compiled artifact in the worker; the same reply as ``worker_compile`` plus the model's bytes."""
    from .artifact import load_artifact, read_artifact
    from .registry import get_backend, resolve_target

    try:
        manifest = read_artifact(path)
        executable = load_artifact(manifest, get_backend(manifest.backend),
                                   resolve_target(target) if target is not None else None, rebuild=rebuild)
    except PortarunError as exc:
        return ("raise", _pack(exc))
    return _keep(executable, executable.model.serialized())


def worker_run(handle: int, feeds: dict[str, np.ndarray]) -> tuple:
    try:
        return ("ok", _LIVE[handle].run(feeds, check=False))
    except PortarunError as exc:
        return ("raise", _pack(exc))


def worker_save(handle: int, path: str) -> tuple:
    try:
        return ("ok", str(_LIVE[handle].save(path)))
    except PortarunError as exc:
        return ("raise", _pack(exc))


def worker_close(handle: int) -> tuple:
    executable = _LIVE.pop(handle, None)
    if executable is not None:
        executable.close()
    return ("ok", None)


# -- in the caller ----------------------------------------------------------------------------
class IsolatedExecutable(Executable):
    """The Executable interface over a worker process (see the module docstring)."""

    def __init__(self, *, worker: IsolatedWorker, request: tuple, handle: int, backend: Any, model: Model,
                 target: Target, precision: Precision, provenance: Provenance, inputs: tuple[TensorSpec, ...],
                 outputs: tuple[TensorSpec, ...], options: dict[str, Any], timeout: float | None):
        super().__init__(backend=backend, model=model, target=target, precision=precision, provenance=provenance,
                         options=options, inputs=inputs, outputs=outputs)
        self.worker = worker
        self.timeout = timeout
        self._request = request  # what to compile again in a fresh worker
        self._handle: int | None = handle
        self._lock = threading.Lock()

    # the public run() checks feeds here, then _run ships them to the worker
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            if self._handle is None or not self.worker.alive:
                # the last worker died: compile again in a fresh one (counted in provenance)
                self._handle = _compile_in(self.worker, self._request, self.timeout, self.model.name,
                                           str(self.target))[0]
                self.provenance.details["isolated_restarts"] = self.worker.restarts
            outcome = self.worker.call(worker_run, self._handle, feeds, timeout_s=self.timeout)
            if outcome.status != "ok":
                self._handle = None  # the worker is gone (or broken): the next call compiles afresh
            return _reply(outcome, "run", self.model.name, str(self.target), self.timeout)[1]

    def save(self, path: str | Path) -> Path:
        with self._lock:
            if self._handle is None or not self.worker.alive:
                self._handle = _compile_in(self.worker, self._request, self.timeout, self.model.name,
                                           str(self.target))[0]
            outcome = self.worker.call(worker_save, self._handle, str(path), timeout_s=self.timeout)
            return Path(_reply(outcome, "save", self.model.name, str(self.target), self.timeout)[1])

    def _close(self) -> None:
        with self._lock:
            if self._handle is not None and self.worker.alive:
                self.worker.call(worker_close, self._handle, timeout_s=30)
            self.worker.close()


def _reply(outcome: TaskOutcome, what: str, model_name: str, target: str, timeout: float | None) -> tuple:
    timed_out, crashed = (CompileTimeoutError, CompileError) if what == "compile" else (RunTimeoutError, RunError)
    backend = target.split(":")[0]
    if outcome.status == "timeout":
        raise timed_out(f"{what} of '{model_name}' on {target} timed out after {timeout:g} s (worker killed)",
                        backend=backend, hint=TIMEOUT_HINT)
    if outcome.status == "crash" and outcome.message.endswith("while starting"):
        raise crashed(f"the worker process for {target} could not start ({outcome.message})", backend=backend,
                      hint="its stderr says why; a spawned worker must be able to import the calling script")
    if outcome.status == "crash":
        raise crashed(f"{backend} crashed during {what} of '{model_name}' on {target}: {outcome.message}",
                      backend=backend, hint=CRASH_HINT)
    if outcome.status == "error":  # the worker itself failed (a bug, or plugins that would not import)
        first = outcome.message.strip().splitlines()[0] if outcome.message.strip() else "unknown error"
        raise crashed(f"isolated {what} of '{model_name}' on {target} failed: {first}", backend=backend,
                      hint="run without isolation for the full traceback")
    reply = outcome.value
    if reply[0] == "raise":
        raise _unpack(reply[1])
    return reply


def _compile_in(worker: IsolatedWorker, request: tuple, timeout: float | None, model_name: str,
                target: str) -> tuple:
    """Compile (``request`` = compile arguments) or load (``("load", path, target, rebuild)``) in ``worker``."""
    if request[0] == "load":
        outcome = worker.call(worker_load, *request[1:], timeout_s=timeout)
    else:
        outcome = worker.call(worker_compile, *request, timeout_s=timeout)
    return _reply(outcome, "compile", model_name, target, timeout)[1:]


def load_isolated(path: str, target: str | None, *, rebuild: bool, timeout: float | None) -> IsolatedExecutable:
    """Load a compiled artifact in a fresh worker process; the returned Executable runs there too."""
    from .registry import get_backend

    request = ("load", str(path), None if target is None else str(target), rebuild)
    worker = IsolatedWorker(name="portarun-artifact-worker")
    try:
        handle, inputs, outputs, provenance, precision_value, real_target, model_bytes = _compile_in(
            worker, request, timeout, Path(path).name, str(target or "its target"))
    except BaseException:
        worker.close()
        raise
    import onnx

    model = Model.from_proto(onnx.load_from_string(model_bytes), name=Path(path).name, check=False)
    resolved = Target.parse(real_target)
    provenance = Provenance(**{**provenance, "providers": tuple(provenance.get("providers") or ())})
    provenance.details = {**provenance.details, "isolated": True, "worker_pid": worker.pid}
    return IsolatedExecutable(worker=worker, request=request, handle=handle, backend=get_backend(resolved.backend),
                              model=model, target=resolved, precision=Precision.parse(precision_value),
                              provenance=provenance, inputs=tuple(inputs), outputs=tuple(outputs), options={},
                              timeout=timeout)


def compile_isolated(model: Model, backend: Any, target: Target, precision: Precision, options: dict[str, Any], *,
                     timeout: float | None) -> IsolatedExecutable:
    """Compile ``model`` in a fresh worker process; the returned Executable runs there too."""
    if model.byte_size <= PROTOBUF_LIMIT:
        source: bytes | str = model.serialized()
    elif model.path is not None:
        source = str(model.path)
    else:
        raise CompileError(f"model '{model.name}' is over 2 GiB and was not loaded from a file", backend=backend.name,
                           hint="save it with external data and load it from disk to isolate it")
    request = (source, model.name, str(target), precision.value, dict(options))
    worker = IsolatedWorker(name=f"portarun-{backend.name}-worker")
    try:
        handle, inputs, outputs, provenance, precision_value, real_target = _compile_in(
            worker, request, timeout, model.name, str(target))
    except BaseException:
        worker.close()
        raise
    provenance = Provenance(**{**provenance, "providers": tuple(provenance.get("providers") or ())})
    provenance.details = {**provenance.details, "isolated": True, "worker_pid": worker.pid}
    return IsolatedExecutable(worker=worker, request=request, handle=handle, backend=backend, model=model,
                              target=Target.parse(real_target), precision=Precision.parse(precision_value),
                              provenance=provenance, inputs=tuple(inputs), outputs=tuple(outputs),
                              options=dict(options), timeout=timeout)


__all__ = ["IsolatedExecutable", "compile_isolated", "load_isolated"]
