"""Test backends for the conformance harness, registered at import time.

Workers import this file by path (``plugins=[__file__]``), which is how a spawned
worker learns about backends that have no entry point:

- ``crashy``: its executable kills the process (``os._exit``) when run;
- ``segv``: its executable dies of SIGSEGV when run;
- ``hangy``: its executable never returns;
- ``liar``: offers a ``gpu`` device but its provenance says it ran on ``cpu`` (a silent fallback);
- ``perturb``: onnxruntime with one node's output shifted by +0.5; the node is named by
  ``PORTARUN_TEST_PERTURB_NODE`` (inherited by spawned workers).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

import portarun
from portarun import Backend, Device, Executable, Model, Precision, Provenance, Target
from portarun.registry import default_registry

PERTURB_ENV = "PORTARUN_TEST_PERTURB_NODE"
PERTURB_DELTA = 0.5


class _Delegating(Executable):
    """Runs an inner onnxruntime executable, optionally misbehaving first."""

    behaviour = "none"

    def __init__(self, inner: Executable, **kwargs: Any):
        super().__init__(**kwargs)
        self.inner = inner

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.behaviour == "exit":
            os._exit(3)
        if self.behaviour == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.behaviour == "hang":
            while True:
                time.sleep(1)
        return self.inner.run(feeds, check=False)

    def _close(self) -> None:
        self.inner.close()


class _TestBackend(Backend):
    precisions = (Precision.FP32,)
    behaviour = "none"
    device_kinds = ("cpu",)
    reported_device = None  # provenance device when it differs from the requested one

    def sdk_version(self) -> str:
        return "test"

    def devices(self) -> list[Device]:
        return [Device(self.name, kind) for kind in self.device_kinds]

    def rewrite(self, model: Model) -> Model:
        return model

    def _compile(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Executable:
        inner = portarun.compile(self.rewrite(model), "onnxruntime:cpu", "fp32")
        device = self.reported_device or target.device
        provenance = Provenance(backend=self.name, sdk_version="test", target=f"{self.name}:{device}",
                                device=f"test {device}", precision=precision.value, providers=("test",))
        executable = _Delegating(inner, backend=self, model=model, target=target, precision=precision,
                                 provenance=provenance)
        executable.behaviour = self.behaviour
        return executable


class CrashyBackend(_TestBackend):
    name = "crashy"
    behaviour = "exit"


class SegvBackend(_TestBackend):
    name = "segv"
    behaviour = "segv"


class HangyBackend(_TestBackend):
    name = "hangy"
    behaviour = "hang"


class LiarBackend(_TestBackend):
    name = "liar"
    device_kinds = ("gpu",)
    default_device = "gpu"
    reported_device = "cpu"


class PerturbBackend(_TestBackend):
    """onnxruntime, except that one named node's first output gets +PERTURB_DELTA."""

    name = "perturb"

    def rewrite(self, model: Model) -> Model:
        target_node = os.environ.get(PERTURB_ENV, "")
        proto = onnx.ModelProto()
        proto.CopyFrom(model.proto)
        nodes = list(proto.graph.node)
        for index, node in enumerate(nodes):
            if node.name == target_node:
                original = node.output[0]
                node.output[0] = original + "__unperturbed"
                delta = numpy_helper.from_array(np.array(PERTURB_DELTA, dtype=np.float32), original + "__delta")
                proto.graph.initializer.append(delta)
                shift = helper.make_node("Add", [node.output[0], delta.name], [original], name=node.name + "__shift")
                nodes.insert(index + 1, shift)
                del proto.graph.node[:]
                proto.graph.node.extend(nodes)
                break
        return Model.from_proto(proto, name=model.name, check=False)


def _crash_now() -> None:
    os._exit(7)


def _sleep_forever() -> None:
    while True:
        time.sleep(1)


def _answer(x: int) -> int:
    return x * 2


def _raise() -> None:
    raise ValueError("deliberate")


for _backend in (CrashyBackend, SegvBackend, HangyBackend, LiarBackend, PerturbBackend):
    default_registry.register(_backend.name, _backend)
