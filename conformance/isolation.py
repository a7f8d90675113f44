"""Run tasks in a separate worker process with a timeout, so a backend that crashes or hangs fails
one case and the run goes on.

The worker itself is ``portarun.worker.IsolatedWorker`` (the same one behind
``portarun.compile(..., isolate=True)``): one worker serves tasks one after another, and one that
crashes or overruns its timeout is killed and replaced for the next task. Here it also imports the
plugins named in ``PORTARUN_CONFORMANCE_PLUGINS`` (os.pathsep-separated), so backends registered
at run time (tests, third-party experiments) exist in the worker too.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from portarun import worker as _worker
from portarun.worker import TaskOutcome, import_plugin

ENV_PLUGINS = "PORTARUN_CONFORMANCE_PLUGINS"
STARTUP_TIMEOUT_S = _worker.STARTUP_TIMEOUT_S


def env_plugins() -> list[str]:
    return _worker.env_plugins(ENV_PLUGINS)


class IsolatedWorker(_worker.IsolatedWorker):
    """``portarun.worker.IsolatedWorker`` that also imports the conformance plugins from the environment."""

    def __init__(self, plugins: Sequence[str] = (), *, method: str = "spawn"):
        plugins = list(plugins)
        super().__init__(plugins + [p for p in env_plugins() if p not in plugins], method=method,
                         name="portarun-conformance-worker")


class InProcess:
    """Same interface, no isolation: for debugging a backend under a debugger (``--no-isolation``)."""

    def __init__(self, plugins: Sequence[str] = ()):
        for plugin in list(plugins) + env_plugins():
            import_plugin(plugin)
        self.restarts = 0

    def call(self, function: Callable[..., Any], *args: Any, timeout_s: float = 0.0, **kwargs: Any) -> TaskOutcome:
        start = time.perf_counter()
        try:
            return TaskOutcome("ok", function(*args, **kwargs), seconds=time.perf_counter() - start)
        except Exception as exc:
            return TaskOutcome("error", message=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)

    def close(self) -> None:
        pass

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


__all__ = ["ENV_PLUGINS", "InProcess", "IsolatedWorker", "TaskOutcome", "env_plugins", "import_plugin"]
