"""The bits of JAX the backend touches that moved between versions (0.10 to 0.12)."""

from __future__ import annotations

import contextlib
from typing import Any

from portarun.plugin import import_sdk

INSTALL_HINT = "pip install 'portarun[xla]' (jax and jaxlib; for NVIDIA GPUs: pip install 'jax[cuda12]')"

# portarun names -> JAX platform names
PLATFORMS = {"cpu": "cpu", "gpu": "gpu", "tpu": "tpu"}


def jax_module():
    return import_sdk("jax", backend="xla", hint=INSTALL_HINT)


def x64():
    """Context in which 64-bit types exist: ONNX computes shapes and indices in int64.

    Scoped (not the global flag) so a user's own JAX code keeps its settings.
    """
    jax = jax_module()
    manager = getattr(jax, "enable_x64", None)
    if manager is not None:
        return manager(True)
    from jax.experimental import enable_x64  # older spelling

    return enable_x64()


def devices(kind: str) -> list[Any]:
    jax = jax_module()
    try:
        return list(jax.devices(PLATFORMS.get(kind, kind)))
    except RuntimeError:
        return []


def versions() -> dict[str, str]:
    jax = jax_module()
    try:
        import jaxlib

        jaxlib_version = getattr(jaxlib, "__version__", None) or jaxlib.version.__version__
    except Exception:  # pragma: no cover - jaxlib always ships with jax
        jaxlib_version = "unknown"
    return {"jax": jax.__version__, "jaxlib": jaxlib_version}


def tracer_type() -> type:
    """JAX's Tracer class: ``jax.core.Tracer`` is public through 0.10 and may move later."""
    jax = jax_module()
    tracer = getattr(getattr(jax, "core", None), "Tracer", None)
    if tracer is None:  # pragma: no cover - newer JAX
        from jax._src import core

        tracer = core.Tracer
    return tracer


def is_tracer(value: Any) -> bool:
    return isinstance(value, tracer_type())


@contextlib.contextmanager
def nothing():
    yield


__all__ = ["INSTALL_HINT", "PLATFORMS", "devices", "is_tracer", "jax_module", "nothing", "tracer_type", "versions",
           "x64"]
