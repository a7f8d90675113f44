"""One exception hierarchy for everything portarun raises on purpose.

Every error carries a message that says what went wrong and, in ``hint``,
how to fix it.  ``exit_code`` is what the CLI returns for it: 2 for a usage
or input problem the user can fix by changing what they asked for, 1 for a
compile, run or check that failed.
"""

from __future__ import annotations


class PortarunError(Exception):
    """Base of every error portarun raises deliberately."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


# --- usage: what the user typed ------------------------------------------------
class UsageError(PortarunError):
    exit_code = 2


class InvalidTargetError(UsageError):
    """A target string that does not parse, or names a device the backend lacks."""


class InvalidPrecisionError(UsageError):
    """A precision name portarun does not know."""


# --- models ---------------------------------------------------------------------
class ModelError(PortarunError):
    exit_code = 2


class ModelNotFoundError(ModelError):
    pass


class ModelLoadError(ModelError):
    """The file is not a readable ONNX model (not protobuf, truncated, empty)."""


class ModelValidationError(ModelError):
    """The file parses but onnx.checker or shape inference rejects it."""


class UnsafeModelError(ModelError):
    """The model asks for something portarun refuses to do (e.g. path traversal)."""


class UnsupportedOpsetError(ModelError):
    """The model needs a newer opset or IR version than the installed onnx knows."""


# --- inputs ---------------------------------------------------------------------
class InputError(PortarunError):
    """Feeds that do not match the signature: names, ranks, shapes, dtypes."""

    exit_code = 2


# --- backends -------------------------------------------------------------------
class BackendError(PortarunError):
    def __init__(self, message: str, *, backend: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.backend = backend


class BackendNotFoundError(BackendError):
    exit_code = 2


class BackendUnavailableError(BackendError):
    """Registered, but cannot run here: SDK missing, plugin broken, no device."""

    exit_code = 2


class UnsupportedError(BackendError):
    """The backend cannot do what was asked (precision, op, device). Never downgraded silently."""

    exit_code = 2


class CompileError(BackendError):
    pass


class RunError(BackendError):
    pass


class CompileTimeoutError(CompileError):
    """A compile in a worker process overran its ``timeout``; the worker was killed."""


class RunTimeoutError(RunError):
    """A run in a worker process overran its ``timeout``; the worker was killed."""


# --- artifacts ------------------------------------------------------------------
class ArtifactError(PortarunError):
    exit_code = 2


class ArtifactCorruptError(ArtifactError):
    """Missing manifest, unreadable manifest, or a payload whose hash does not match."""


class ArtifactIncompatibleError(ArtifactError):
    """Written by another SDK version, target or portarun schema than this one."""


# --- export ---------------------------------------------------------------------
class ExportError(PortarunError):
    """Turning a framework model (PyTorch, Hugging Face) into ONNX failed."""


# --- checks ---------------------------------------------------------------------
class CheckFailedError(PortarunError):
    """A parity or accuracy check did not hold."""


__all__ = [name for name in list(globals()) if name.endswith("Error")]
