"""Backend and Executable: the one interface every backend implements.

The base classes own the public methods and their error messages; a backend
fills in small hooks (``_supports``, ``_compile``, ``_run``, ``_save_payload``, ``_load_payload``).
Like Polygraphy's ``BaseRunner.infer``, ``Executable.run`` checks the feeds
against the signature before the backend sees them.
"""

from __future__ import annotations

import difflib
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .errors import (
    BackendUnavailableError,
    CompileError,
    InputError,
    InvalidTargetError,
    PortarunError,
    RunError,
    UnsupportedError,
    UnsupportedOpsError,
    UsageError,
    first_line,
)
from . import model_checks
from .artifact import Manifest, save_artifact
from .model import Model
from .tails import Tails, check_tails, host_tails
from .types import Device, Precision, Support, Target, TensorSpec


@dataclass
class Provenance:
    """What actually ran. A silent fallback (say, CUDA EP to CPU) must show up here."""

    backend: str
    sdk_version: str
    target: str  # the target that really executes, e.g. "onnxruntime:cpu"
    device: str  # human description of the device
    precision: str  # what the backend computes in, as it reports it
    providers: tuple[str, ...] = ()  # execution providers / plugins actually in use
    compile_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["providers"] = list(self.providers)
        return data


def _load_feed(name: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple, int, float, bool, np.generic)):
        return np.asarray(value)
    if hasattr(value, "__array__"):
        return np.asarray(value)
    raise InputError(f"input '{name}': expected a numpy array, got {type(value).__name__}")


def check_feeds(specs: tuple[TensorSpec, ...], feeds: Any) -> dict[str, np.ndarray]:
    """Validate ``feeds`` against ``specs``; return them as a dict of arrays.

    Raises InputError naming the input and what was expected vs received.
    """
    if not isinstance(feeds, Mapping):
        raise InputError(f"feeds must be a mapping of input name to array, got {type(feeds).__name__}",
                         hint="pass a dict, e.g. {'x': array}")
    expected = [spec.name for spec in specs]
    if len(feeds) != len(expected) or any(name not in feeds for name in expected):
        missing = [n for n in expected if n not in feeds]
        unknown = [n for n in feeds if n not in set(expected)]
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f"'{n}'" for n in missing))
        if unknown:
            described = []
            for n in unknown:
                close = difflib.get_close_matches(str(n), expected, n=1)
                described.append(f"'{n}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            parts.append("unknown " + ", ".join(described))
        raise InputError("feeds do not match the model inputs: " + "; ".join(parts),
                         hint="inputs are: " + ", ".join(f"{s.name} {s.dtype.name}{s.shape_text()}" for s in specs))
    bound: dict[str, tuple[int, str]] = {}
    checked = {}
    for spec in specs:
        array = _load_feed(spec.name, feeds[spec.name])
        if not array.dtype.isnative and array.dtype.newbyteorder("=") == spec.dtype:
            array = array.astype(spec.dtype)  # same numbers in the other byte order (a '>f4' file): SDKs want native
        if spec.dtype != np.dtype(object):
            spec.check(array, bound)
        checked[spec.name] = array
    return checked


def import_sdk(module: str, *, backend: str, hint: str) -> Any:
    """Import a vendor SDK on first use; a missing one is BackendUnavailableError with ``hint``.

    Backends call this from their hooks (never at module import), so ``import portarun`` and
    ``portarun backends`` work on machines without the SDK.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(f"backend '{backend}' is unavailable: cannot import {module} ({exc})",
                                      backend=backend, hint=hint) from None


def quantization_support(model: Model, precision: Precision, *, float_model_hint: str = "",
                         quantized_runs_at: tuple[Precision, ...] = ()) -> Support:
    """Does the quantization ``model`` already carries fit ``precision``?

    Backends run quantized precisions from the QDQ the model carries (``portarun.quantize``
    writes it; ``portarun.compile`` quantizes float models first). A float model at a quantized
    precision, a model quantized differently, or a quantized model at fp32 is a clear "no".
    ``float_model_hint`` adds a backend-specific way out; ``quantized_runs_at`` lists float
    precisions at which the backend still runs a quantized model (e.g. bf16 activations).
    """
    from .model import quantization_of

    carried = quantization_of(model)
    if precision.is_quantized:
        if carried is None:
            return Support.no(f"the model is float; quantize it to {precision} first "
                              f"(portarun quantize MODEL -p {precision} -o MODEL.q.onnx){float_model_hint}")
        if carried != precision.value:
            return Support.no(f"the model is quantized as {carried}, not {precision}")
    elif carried is not None and precision not in quantized_runs_at:
        return Support.no(f"the model is already quantized ({carried}); compile it with -p {carried}")
    return Support.yes()


class Executable(ABC):
    """A model compiled for one target and precision, ready to run."""

    def __init__(self, *, backend: "Backend", model: Model, target: Target, precision: Precision,
                 provenance: Provenance, options: dict[str, Any] | None = None,
                 inputs: tuple[TensorSpec, ...] | None = None, outputs: tuple[TensorSpec, ...] | None = None):
        self.backend = backend
        self.model = model
        self.target = target
        self.precision = precision
        self.provenance = provenance
        self.options = dict(options or {})
        self.inputs: tuple[TensorSpec, ...] = inputs if inputs is not None else model.inputs
        self.outputs: tuple[TensorSpec, ...] = outputs if outputs is not None else model.outputs
        self._closed = False

    # -- hooks for backends -----------------------------------------------------------
    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with checked feeds; return every model output by name as numpy arrays."""

    def _run_tails(self, feeds: dict[str, np.ndarray], tails: Tails) -> dict[str, np.ndarray]:
        """Run and return each output in ``tails`` from its start on along its axis (see portarun.tails).
        The default cuts them from full outputs on the host; a backend that can avoid computing
        the rest (XLA) overrides it."""
        return host_tails(self._run(feeds), tails, where=str(self.target))

    def _save_payload(self, payload_dir: Path) -> dict[str, Any]:
        """Write the backend's compiled form into ``payload_dir`` (the artifact's payload folder, which
        portarun.artifact lays out); return extras for the manifest, handed back to ``_load_payload``."""
        return {}

    def _close(self) -> None:
        pass

    # -- public -------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, Any], *, check: bool = True,
            tails: Mapping[str, tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
        """Run the model. ``feeds`` maps input names to arrays; returns output name -> array.

        ``tails`` maps output names to ``(axis, start)``: those outputs come back only from
        ``start`` on along ``axis`` (a static-cache generate loop needs only the new cache
        entries; XLA then never writes the rest). The values are the full output's.
        """
        if self._closed:
            raise RunError(f"{self.target}: this executable was closed", backend=self.backend.name,
                           hint="compile or load it again")
        checked = check_feeds(self.inputs, feeds) if check else dict(feeds)
        wanted = check_tails(self.outputs, tails, where=str(self.target)) if tails else None
        try:
            return self._run_tails(checked, wanted) if wanted else self._run(checked)
        except PortarunError:
            raise
        except Exception as exc:  # vendor SDK errors become one clear RunError
            raise RunError(f"{self.backend.name} failed to run '{self.model.name}' on {self.target}: "
                           f"{first_line(exc)}", backend=self.backend.name,
                           hint="check the feeds against `portarun inspect MODEL`; --debug shows the SDK's traceback") from exc

    def save(self, path: str | Path) -> Path:
        """Write a compiled artifact directory (atomically)."""
        return save_artifact(self, Path(path))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "Executable":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model.name} on {self.target} at {self.precision}>"


class Backend(ABC):
    """A vendor stack. Subclasses set the class attributes and fill in the hooks.

    Importing a backend module must not import its SDK: the SDK is imported by the
    hooks, so a missing SDK shows up as ``BackendUnavailableError`` with ``install_hint``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    precisions: ClassVar[tuple[Precision, ...]] = (Precision.FP32,)
    install_hint: ClassVar[str] = ""
    default_device: ClassVar[str] = "cpu"
    # every device kind this backend can target on some machine (e.g. cpu, cuda, rocm)
    device_kinds: ClassVar[tuple[str, ...]] = ("cpu",)
    # compile options the backend accepts: name -> one-line description
    options: ClassVar[dict[str, str]] = {}
    # True when every new input shape costs a compile (XLA): loops such as generation then keep shapes fixed
    compiles_per_shape: ClassVar[bool] = False
    # Compile options under which this backend computes a quantized model exactly as its QDQ
    # says (no faster approximation), on the host CPU and fast: the quantizer evaluates
    # candidates on the first backend that sets it (else the reference evaluator). None: not one.
    exact_evaluation_options: ClassVar[dict[str, Any] | None] = None

    # -- hooks ------------------------------------------------------------------------------
    @abstractmethod
    def sdk_version(self) -> str:
        """Version of the vendor SDK; raise BackendUnavailableError when it cannot be imported."""

    @abstractmethod
    def devices(self) -> list[Device]:
        """Devices usable here; raise BackendUnavailableError when there are none."""

    def _supports(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Support:
        """Can this compile work? ``options`` are the compile's (empty when asked without them).

        Work the answer needed and the compile needs again (XLA: the graph lowered to its ops) may
        travel in ``Support.yes(prepared=...)``: the base ``compile`` hands it to ``_compile`` as
        ``prepared=``, within that one call, so it is done once.
        """
        return Support.yes()

    def _check_options(self, options: dict[str, Any]) -> None:
        """Check option values (names are already known to be in ``options``); raise UsageError."""

    def quantizes_float_models(self, options: dict[str, Any]) -> bool:
        """Whether this compile quantizes a float model itself (OpenVINO with ``quantizer="nncf"``),
        so ``portarun.compile`` must hand it the float model instead of quantizing it first."""
        return False

    @abstractmethod
    def _compile(self, model: Model, target: Target, precision: Precision, options: dict[str, Any]) -> Executable:
        """Compile; raise CompileError on failure. Receives ``prepared=`` when ``_supports`` prepared something."""

    def _load_payload(self, payload_dir: Path, source_model: Model, manifest: Manifest,
                      target: Target) -> Executable:
        """Load what ``Executable._save_payload`` wrote into ``payload_dir`` (its extras are
        ``manifest.extras``). Default: recompile ``source_model``, the model the artifact holds."""
        return self._rebuild(payload_dir, source_model, manifest, target)

    def _rebuild(self, payload_dir: Path, source_model: Model, manifest: Manifest, target: Target) -> Executable:
        """Recompile an artifact that does not fit here (``rebuild=True``). Default: from ``source_model``.

        A backend whose payload holds a portable intermediate form (OpenVINO IR) may rebuild from that.
        """
        return self.compile(source_model, target, manifest.precision, **manifest.options)

    def device_hint(self, device: str) -> str | None:
        """How to get ``device`` working when it is a known kind missing here."""
        return self.install_hint or None

    def missing_targets(self, devices: list[Device]) -> dict[str, str]:
        """Targets this backend knows but cannot use here (``devices`` are the usable ones): target -> hint.

        ``portarun backends`` lists them, so a machine without, say, an AMD GPU stack says
        what is missing for ``onnxruntime:rocm`` instead of staying silent.
        """
        present = {d.kind for d in devices}
        return {f"{self.name}:{kind}": self.device_hint(kind) or "" for kind in self.device_kinds
                if kind not in present}

    def artifact_incompatibility(self, manifest: Manifest) -> str | None:
        """Why an artifact cannot be loaded here (None when it can). Default: SDK version must match."""
        version = self.sdk_version()
        if manifest.sdk_version != version:
            return (f"artifact was compiled with {self.name} {manifest.sdk_version}, "
                    f"this machine has {version}")
        return None

    # -- owned by the base class ------------------------------------------------------------
    def unavailable(self, reason: str) -> BackendUnavailableError:
        """The error a hook raises when the SDK or device is missing."""
        return BackendUnavailableError(f"backend '{self.name}' is unavailable: {reason}",
                                       backend=self.name, hint=self.install_hint or None)

    def known_target(self, target: Target | str | None) -> Target:
        """``target`` with the default device filled in, checked against this backend's name and the device
        kinds it can ever target; needs no SDK (whether the device exists here is ``resolve_target``'s)."""
        if target is None:
            target = Target(self.name)
        target = Target.parse(target)
        if target.backend != self.name:
            raise InvalidTargetError(f"target '{target}' is not for backend '{self.name}'")
        device = target.device or self.default_device
        if device not in self.device_kinds:
            raise InvalidTargetError(f"{self.name} has no device kind '{device}'",
                                     hint=f"{self.name} targets: "
                                          + ", ".join(f"{self.name}:{k}" for k in self.device_kinds))
        return Target(self.name, device, target.index)

    def resolve_target(self, target: Target | str | None) -> Target:
        """Fill in the default device and check the device exists here."""
        target = self.known_target(target)
        device = target.device
        devices = self.devices()
        matching = [d for d in devices if d.kind == device]
        if not matching:
            known = ", ".join(sorted({f"{self.name}:{d.kind}" for d in devices})) or "none"
            raise BackendUnavailableError(
                f"target {self.name}:{device} is unavailable on this machine (available: {known})",
                backend=self.name, hint=self.device_hint(device))
        if target.index is not None:
            indices = [d.index for d in matching]
            if None not in indices and target.index not in indices:
                raise InvalidTargetError(f"{self.name} has no {device}:{target.index} here",
                                         hint=f"available: {', '.join(f'{device}:{i}' for i in indices)}")
        return Target(self.name, device, target.index)

    def check_options(self, options: dict[str, Any]) -> None:
        unknown = [k for k in options if k not in self.options]
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise UsageError(f"backend '{self.name}' does not accept option(s) {', '.join(unknown)}",
                             hint=f"its options: {known}")
        self._check_options(options)

    def supports(self, model: Model, target: Target | str | None = None,
                 precision: Precision | str = Precision.FP32, options: dict[str, Any] | None = None) -> Support:
        """Can this backend compile ``model`` for ``target`` at ``precision`` with ``options``? Asked before compiling."""
        precision = Precision.parse(precision)
        try:
            target = self.resolve_target(target)
        except PortarunError as exc:
            return Support.no(str(exc))
        if precision not in self.precisions:
            return Support.no(f"{self.name} does not support precision {precision} "
                              f"(supported: {', '.join(p.value for p in self.precisions)})")
        return self._supports(model, target, precision, dict(options or {}))

    def compile(self, model: Model, target: Target | str | None = None,
                precision: Precision | str = Precision.FP32, **options: Any) -> Executable:
        precision = Precision.parse(precision)
        self.check_options(options)
        target = self.resolve_target(target)
        support = self.supports(model, target, precision, options)
        if not support:
            error = UnsupportedOpsError if support.missing_ops else UnsupportedError
            raise error(f"{self.name} cannot compile '{model.name}' for {target} at {precision}: {support.reason}",
                        backend=self.name, reason=support.reason, missing_ops=support.missing_ops,
                        hint=support.hint or "choose another target or precision; `portarun backends` lists them")
        endless = model_checks.endless_loops(model.proto)
        if endless:  # every backend would run it until killed: refuse it up front
            raise CompileError(f"'{model.name}' can never finish: {', '.join(endless[:3])} has no trip count and a "
                               "condition that is always true", backend=self.name,
                               hint="give the Loop a trip count, or a condition its body can turn false")
        prepared = {} if support.prepared is None else {"prepared": support.prepared}
        start = time.perf_counter()
        try:
            executable = self._compile(model, target, precision, dict(options), **prepared)
        except PortarunError:
            raise
        except Exception as exc:
            raise CompileError(f"{self.name} failed to compile '{model.name}' for {target}: {first_line(exc)}",
                               backend=self.name,
                               hint="try another target or precision; --debug shows the SDK's traceback") from exc
        if executable.provenance.compile_seconds is None:
            executable.provenance.compile_seconds = time.perf_counter() - start
        return executable

    def __repr__(self) -> str:
        return f"<backend {self.name}>"
