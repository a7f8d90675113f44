"""Backend discovery through the ``portarun.backends`` entry-point group.

Modeled on JAX's plugin discovery: listing names reads package metadata only;
a backend's module (and its SDK) loads on first use; a failure to load is kept
and reported later (``portarun backends``) instead of crashing the process.
In-tree backends and third-party packages register the same way.

``PORTARUN_BACKENDS=a,b`` restricts discovery to those backends, in that order.
"""

from __future__ import annotations

import difflib
import os
import threading
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from .backend import Backend
from .errors import BackendNotFoundError, BackendUnavailableError, PortarunError
from .types import Device, Precision, Target

GROUP = "portarun.backends"
ENV_ORDER = "PORTARUN_BACKENDS"

# Target spellings that name another backend's device: `rocm:gpu` is ORT on AMD GPUs.
TARGET_ALIASES: dict[str, Target] = {
    "rocm": Target("onnxruntime", "rocm"),
}


@dataclass
class BackendInfo:
    """What ``portarun backends`` shows for one backend."""

    name: str
    entry_point: str
    available: bool
    version: str | None = None
    devices: list[Device] = field(default_factory=list)
    precisions: list[str] = field(default_factory=list)
    description: str = ""
    reason: str | None = None
    install_hint: str | None = None
    # targets the backend knows but cannot use here -> what to install (only for available backends)
    missing_targets: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "entry_point": self.entry_point, "available": self.available,
            "version": self.version, "devices": [str(d.target) for d in self.devices],
            "precisions": self.precisions, "description": self.description,
            "reason": self.reason, "install_hint": self.install_hint,
            "missing_targets": dict(self.missing_targets),
        }


class Registry:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entry_points: dict[str, metadata.EntryPoint] | None = None
        self._registered: dict[str, type[Backend]] = {}
        self._instances: dict[str, Backend] = {}
        self._failures: dict[str, BackendUnavailableError] = {}

    # -- discovery ----------------------------------------------------------------------
    def refresh(self) -> None:
        """Forget what was discovered and loaded (after installing a plugin, or in tests)."""
        with self._lock:
            self._entry_points = None
            self._instances.clear()
            self._failures.clear()

    def _discover(self) -> dict[str, metadata.EntryPoint]:
        with self._lock:
            if self._entry_points is None:
                found: dict[str, metadata.EntryPoint] = {}
                for ep in metadata.entry_points(group=GROUP):
                    found.setdefault(ep.name, ep)  # first distribution wins on a name clash
                self._entry_points = found
            return self._entry_points

    def _order(self) -> list[str] | None:
        text = os.environ.get(ENV_ORDER, "").strip()
        if not text:
            return None
        return [name.strip().lower() for name in text.split(",") if name.strip()]

    def names(self) -> list[str]:
        """Registered backend names (metadata only; nothing is imported)."""
        known = list(self._discover()) + [n for n in self._registered if n not in self._discover()]
        order = self._order()
        if order is None:
            return sorted(known)
        return [n for n in order if n in known]

    def register(self, name: str, backend_class: type[Backend]) -> None:
        """Register a backend class at run time (equivalent to an entry point)."""
        with self._lock:
            self._registered[name] = backend_class
            self._instances.pop(name, None)
            self._failures.pop(name, None)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._registered.pop(name, None)
            self._instances.pop(name, None)
            self._failures.pop(name, None)

    # -- loading ------------------------------------------------------------------------
    def _not_found(self, name: str) -> BackendNotFoundError:
        names = self.names()
        close = difflib.get_close_matches(name, names + list(TARGET_ALIASES), n=1)
        if close:
            hint = f"did you mean '{close[0]}'?"
        else:
            hint = f"registered backends: {', '.join(names) or 'none'}"
        order = self._order()
        if order is not None and name not in order and (name in self._discover() or name in self._registered):
            hint = f"{ENV_ORDER}={os.environ.get(ENV_ORDER)} excludes it"
        return BackendNotFoundError(f"no backend named '{name}'", backend=name, hint=hint)

    def get(self, name: str) -> Backend:
        """The backend instance; raises BackendNotFoundError or BackendUnavailableError."""
        name = name.strip().lower()
        with self._lock:
            if name in self._instances:
                return self._instances[name]
            if name in self._failures:
                raise self._failures[name]
            if name not in self.names():
                raise self._not_found(name)
            source = "(registered at run time)"
            try:
                if name in self._registered:
                    backend_class = self._registered[name]
                else:
                    ep = self._discover()[name]
                    source = ep.value
                    backend_class = ep.load()
                if not (isinstance(backend_class, type) and issubclass(backend_class, Backend)):
                    raise TypeError(f"{source} is not a portarun.Backend subclass")
                instance = backend_class()
            except PortarunError as exc:
                failure = BackendUnavailableError(f"backend '{name}' failed to load: {exc}", backend=name)
                self._failures[name] = failure
                raise failure from exc
            except Exception as exc:  # a broken plugin must not take portarun down
                last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                failure = BackendUnavailableError(
                    f"backend '{name}' failed to load from {source}: {last}", backend=name,
                    hint="reinstall the package that provides it, or run with --debug for the traceback")
                failure.__cause__ = exc
                self._failures[name] = failure
                raise failure from exc
            self._instances[name] = instance
            return instance

    def info(self, name: str) -> BackendInfo:
        entry = self._discover().get(name)
        entry_text = entry.value if entry is not None else "(registered at run time)"
        try:
            backend = self.get(name)
        except BackendUnavailableError as exc:
            return BackendInfo(name, entry_text, False, reason=exc.message, install_hint=exc.hint)
        info = BackendInfo(name, entry_text, False, precisions=[p.value for p in backend.precisions],
                           description=backend.description, install_hint=backend.install_hint or None)
        try:
            info.version = backend.sdk_version()
            info.devices = backend.devices()
            info.available = bool(info.devices)
            if not info.available:
                info.reason = "no usable device found"
            else:
                info.missing_targets = backend.missing_targets(info.devices)
        except BackendUnavailableError as exc:
            info.reason = exc.message
            info.install_hint = exc.hint or info.install_hint
        return info

    def list(self) -> list[BackendInfo]:
        return [self.info(name) for name in self.names()]


default_registry = Registry()


def resolve_target(target: Target | str) -> Target:
    """Parse a target string and expand aliases such as ``rocm:gpu``."""
    parsed = Target.parse(target)
    alias = TARGET_ALIASES.get(parsed.backend)
    if alias is not None and parsed.backend not in default_registry.names():
        return Target(alias.backend, alias.device, parsed.index)
    return parsed


def get_backend(name: str) -> Backend:
    return default_registry.get(name)


def list_backends() -> list[BackendInfo]:
    """Every registered backend: available or not, and why."""
    return default_registry.list()


def available_targets(precision: Precision | str | None = None) -> list[Target]:
    """One target per available (backend, device kind) pair, in registry order."""
    targets: list[Target] = []
    for info in list_backends():
        if not info.available:
            continue
        if precision is not None and Precision.parse(precision).value not in info.precisions:
            continue
        seen: set[str] = set()
        for device in info.devices:
            if device.kind not in seen:
                seen.add(device.kind)
                targets.append(Target(info.name, device.kind))
    return targets
