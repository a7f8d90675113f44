"""Test backends for isolate=True, imported by the worker through PORTARUN_PLUGINS (fakes, by design).

- ``slowcompile``: its compile sleeps for an hour (a compile that never ends);
- ``segvfirst``: onnxruntime, except that a run whose first input element is 13 dies of SIGSEGV.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np

import portarun
from portarun import Backend, Device, Executable, Model, Precision, Provenance, Target
from portarun.registry import default_registry


class _Delegating(Executable):
    def __init__(self, inner: Executable, **kwargs: Any):
        super().__init__(**kwargs)
        self.inner = inner

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        first = next(iter(feeds.values()))
        if first.size and float(first.reshape(-1)[0]) == 13.0:
            os.kill(os.getpid(), signal.SIGSEGV)
        return self.inner.run(feeds, check=False)


class _Base(Backend):
    precisions = (Precision.FP32,)

    def sdk_version(self) -> str:
        return "test"

    def devices(self) -> list[Device]:
        return [Device(self.name, "cpu")]

    def _compile(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Executable:
        inner = portarun.compile(model, "onnxruntime:cpu")
        provenance = Provenance(backend=self.name, sdk_version="test", target=str(target), device="test cpu",
                                precision="fp32", providers=("test",))
        return _Delegating(inner, backend=self, model=model, target=target, precision=precision,
                           provenance=provenance)


class SlowCompileBackend(_Base):
    name = "slowcompile"

    def _compile(self, model, target, precision, options):
        time.sleep(3600)
        raise AssertionError("unreachable")


class SegvFirstBackend(_Base):
    name = "segvfirst"


for _backend in (SlowCompileBackend, SegvFirstBackend):
    default_registry.register(_backend.name, _backend)
