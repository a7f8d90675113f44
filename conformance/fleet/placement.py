"""Where a conformance cell may run on a Ray cluster: the resources its target asks for.

The rules (documented in the README, "Fleet sweeps on Ray"):

- A node may declare a custom resource named ``portarun/<target>`` (``ray start --resources
  '{"portarun/openvino:npu": 1}'``); when any node in the cluster declares it, a cell for that target
  asks for one unit of it. This is how devices Ray does not count (NPUs, Intel GPUs, a CPU with a
  particular SDK) are placed, and it wins over the rules below.
- GPU targets (``onnxruntime:cuda|tensorrt|rocm|migraphx``, ``tensorrt:cuda``, ``xla:gpu``) ask for one
  ``GPU`` and, when the cluster has exactly one accelerator type of the target's vendor (Ray's
  ``accelerator_type:<name>`` resources, names from ``ray.util.accelerators``: ``NVIDIA_H100`` is
  ``H100``), that type; ``accelerator_types`` (target -> type) picks one explicitly.
- ``xla:tpu`` asks for one ``TPU``.
- CPU targets ask for ``num_cpus`` (1 by default).
- Anything else (``openvino:npu``, ``openvino:gpu`` ...) needs its ``portarun/<target>`` resource.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

RESOURCE_PREFIX = "portarun/"
ACCELERATOR_PREFIX = "accelerator_type:"
# (backend, device) -> GPU vendor prefix of ray.util.accelerators constants
GPU_TARGETS = {("onnxruntime", "cuda"): "NVIDIA_", ("onnxruntime", "tensorrt"): "NVIDIA_",
               ("tensorrt", "cuda"): "NVIDIA_", ("onnxruntime", "rocm"): "AMD_",
               ("onnxruntime", "migraphx"): "AMD_", ("xla", "gpu"): ""}


@dataclass(frozen=True)
class Placement:
    """A cell's resource request, in Ray's terms; ``needs`` is what a node must have in total."""

    num_cpus: float = 0.0
    num_gpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)
    accelerator_type: str | None = None
    unplaceable: str | None = None  # set when no rule can place the target at all

    def ray_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            options["resources"] = dict(self.resources)
        if self.accelerator_type:
            options["accelerator_type"] = self.accelerator_type
        return options

    def needs(self) -> dict[str, float]:
        wanted = {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.resources}
        if self.accelerator_type:
            wanted[ACCELERATOR_PREFIX + self.accelerator_type] = 0.001
        return {k: v for k, v in wanted.items() if v}

    def fits(self, node_resources: Mapping[str, float]) -> bool:
        return self.unplaceable is None and all(node_resources.get(k, 0.0) >= v for k, v in self.needs().items())

    def describe(self) -> str:
        if self.unplaceable:
            return self.unplaceable
        return ", ".join(f"{k}={v:g}" for k, v in self.needs().items()) or "nothing"


def _vendor_types(cluster: Mapping[str, float], vendor: str) -> list[str]:
    import ray.util.accelerators as accelerators

    names = {getattr(accelerators, c) for c in dir(accelerators) if c.startswith(vendor) and c.isupper()}
    present = [k[len(ACCELERATOR_PREFIX):] for k in cluster if k.startswith(ACCELERATOR_PREFIX)]
    return sorted(t for t in present if not vendor or t in names)


def placement_for(target: str, cluster: Mapping[str, float], *, accelerator_types: Mapping[str, str] | None = None,
                  num_cpus: float = 1.0) -> Placement:
    """The placement for ``target`` in a cluster whose summed resources are ``cluster``."""
    backend, _, rest = target.partition(":")
    device = rest.split(":")[0] if rest else "cpu"
    custom = RESOURCE_PREFIX + target
    if custom in cluster:
        return Placement(num_cpus=num_cpus if device == "cpu" else 0.0, resources={custom: 1.0})
    if (backend, device) in GPU_TARGETS:
        chosen = (accelerator_types or {}).get(target)
        if chosen is None:
            types = _vendor_types(cluster, GPU_TARGETS[(backend, device)])
            chosen = types[0] if len(types) == 1 else None
        return Placement(num_cpus=0.0, num_gpus=1.0, accelerator_type=chosen)
    if (backend, device) == ("xla", "tpu"):
        return Placement(resources={"TPU": 1.0})
    if device == "cpu":
        return Placement(num_cpus=num_cpus)
    return Placement(unplaceable=f"{target} needs a node declaring the resource {custom!r} "
                                 f"(ray start ... --resources '{{\"{custom}\": 1}}')")
