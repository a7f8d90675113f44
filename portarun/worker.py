"""A reusable worker process that runs one task at a time, with a timeout, surviving crashes.

Starting a Python with numpy, onnx and a vendor SDK costs about a second, so one worker serves
tasks one after another; when a task crashes the worker (segfault, ``os._exit``) or overruns its
timeout, the worker is killed and the next task gets a fresh one. Workers start with the
``spawn`` method: no state (threads, SDK handles, CUDA contexts) leaks from the parent.

A spawned worker knows only what it imports. Backends registered at run time (tests,
third-party experiments) reach it through ``plugins``: module names or ``.py`` paths the worker
imports before serving, each of which may call ``portarun.registry.default_registry.register``.
``PORTARUN_PLUGINS`` (os.pathsep-separated) adds more from the environment. Used by
``portarun.compile(..., isolate=True)`` and by the conformance harness.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import multiprocessing
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

ENV_PLUGINS = "PORTARUN_PLUGINS"
STARTUP_TIMEOUT_S = 120.0


@dataclass
class TaskOutcome:
    """What became of one task: ``ok`` (value set), ``error`` (it raised), ``crash`` or ``timeout``."""

    status: str
    value: Any = None
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def env_plugins(variable: str = ENV_PLUGINS) -> list[str]:
    return [p for p in os.environ.get(variable, "").split(os.pathsep) if p.strip()]


def import_plugin(spec: str) -> None:
    """Import a module by name, or a ``.py`` file by path (under a stable module name)."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec).resolve()
        name = "portarun_plugin_" + "_".join(path.with_suffix("").parts[-3:]).replace("-", "_").replace(".", "_")
        if name in sys.modules:
            return
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot import plugin file {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        importlib.import_module(spec)


def _limit_memory(limit_bytes: int | None) -> None:
    if limit_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(limit_bytes), int(limit_bytes)))


def _serve(conn: Any, plugins: Sequence[str], memory_limit: int | None = None) -> None:
    """Worker main loop: import plugins, then answer (function, args, kwargs) messages until None."""
    try:
        _limit_memory(memory_limit)
        for plugin in plugins:
            import_plugin(plugin)
        conn.send(("ready", None, ""))
    except BaseException as exc:  # the parent reports it for every task
        conn.send(("error", None, f"plugin import failed: {type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        function, args, kwargs = message
        try:
            reply = ("ok", function(*args, **kwargs), "")
        except BaseException as exc:  # report, keep serving
            reply = ("error", None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result is the task's failure, not the worker's
            conn.send(("error", None, f"result could not be sent back: {type(exc).__name__}: {exc}"))


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Start the child without re-running the caller's ``__main__``.

    ``spawn`` re-imports the parent's main script in the child; a user's script without an
    ``if __name__ == "__main__":`` guard would then compile again and spawn again (multiprocessing
    refuses that), and a script fed on stdin ('<stdin>') cannot be re-read at all. A worker needs
    only portarun and the plugins it is given, so the main module's file and spec are hidden while
    the child starts (tasks must come from importable modules, which they already must for pickling).
    """
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if hasattr(main, name)}
    for name in saved:
        if name == "__file__":
            delattr(main, name)
        else:
            setattr(main, name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "worker vanished"
    if code < 0:
        try:
            return f"worker killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code}"


class IsolatedWorker:
    """A reusable worker process; ``call`` runs one task in it with a timeout."""

    def __init__(self, plugins: Sequence[str] = (), *, method: str = "spawn", memory_limit: int | None = None,
                 name: str = "portarun-worker"):
        self.plugins = list(plugins) + [p for p in env_plugins() if p not in plugins]
        self.memory_limit = memory_limit
        self.name = name
        self._context = multiprocessing.get_context(method)
        self._process: Any = None
        self._conn: Any = None
        self.starts = 0

    @property
    def restarts(self) -> int:
        """How many times a worker had to be replaced after a crash or timeout."""
        return max(self.starts - 1, 0)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _start(self) -> TaskOutcome | None:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, self.plugins, self.memory_limit), daemon=True,
                                        name=self.name)
        with _main_hidden():
            process.start()
        self.starts += 1
        child.close()
        self._process, self._conn = process, parent
        if not parent.poll(STARTUP_TIMEOUT_S):
            self._kill()
            return TaskOutcome("timeout", message=f"worker did not start within {STARTUP_TIMEOUT_S:.0f} s")
        try:
            status, _, message = parent.recv()
        except EOFError:
            code = self._kill()
            return TaskOutcome("crash", message=f"{describe_exit(code)} while starting")
        if status != "ready":
            self._kill()
            return TaskOutcome("error", message=message)
        return None

    def _kill(self) -> int | None:
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if process is None:
            return None
        if process.is_alive():
            process.kill()
        process.join(10)
        return process.exitcode

    def call(self, function: Callable[..., Any], *args: Any, timeout_s: float | None = 300.0,
             **kwargs: Any) -> TaskOutcome:
        """Run ``function(*args, **kwargs)`` in the worker (``None``: no timeout). ``function`` must be
        importable by name."""
        if not self.alive:
            if self._process is not None:
                self._kill()
            failed = self._start()
            if failed is not None:
                return failed
        start = time.perf_counter()
        try:
            self._conn.send((function, args, kwargs))
        except (BrokenPipeError, OSError) as exc:
            code = self._kill()
            return TaskOutcome("crash", message=f"{describe_exit(code)} ({exc})")
        if not self._conn.poll(timeout_s):
            self._kill()
            return TaskOutcome("timeout", message=f"no answer within {timeout_s:g} s; worker killed",
                               seconds=time.perf_counter() - start)
        try:
            status, value, message = self._conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            code = self._kill()
            return TaskOutcome("crash", message=describe_exit(code), seconds=time.perf_counter() - start)
        return TaskOutcome(status, value, message, time.perf_counter() - start)

    def close(self) -> None:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            try:
                self._conn.send(None)
                self._process.join(5)
            except (BrokenPipeError, OSError):
                pass
        self._kill()

    def __enter__(self) -> "IsolatedWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ENV_PLUGINS", "IsolatedWorker", "TaskOutcome", "describe_exit", "env_plugins", "import_plugin"]
