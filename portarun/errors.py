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
    """The backend cannot do what was asked (precision, op, device). Never downgraded silently.

    ``reason`` is the backend's own answer (without the "cannot compile ..." preamble) and
    ``missing_ops`` the op types it has no implementation for, so the CLI, conformance and
    plans can show them without parsing the message.
    """

    exit_code = 2

    def __init__(self, message: str, *, backend: str | None = None, hint: str | None = None,
                 reason: str = "", missing_ops: tuple[str, ...] = ()):
        super().__init__(message, backend=backend, hint=hint)
        self.reason = reason or message
        self.missing_ops = tuple(missing_ops)


class CompileError(BackendError):
    pass


class RunError(BackendError):
    pass


class UnsupportedOpsError(UnsupportedError, CompileError):
    """The model uses op types the backend cannot compile (listed in ``missing_ops``).

    It is also a CompileError: the compile failed for it, and callers that catch CompileError
    for a missing op keep working. Its exit code stays the compile failure's.
    """

    exit_code = 1


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


def first_line(error: "BaseException | str | None", limit: int | None = None) -> str:
    """The first non-empty line of an exception's (or a message's) text, for one-line reports.

    An exception with no text gives its type name; torch.onnx's wrapped errors give the line
    under their "## Exception summary" heading (the real cause). ``limit`` cuts long lines.
    """
    text = (error if isinstance(error, str) else "" if error is None else str(error)).strip()
    if "## Exception summary" in text:
        summary = [line for line in text.split("## Exception summary", 1)[1].splitlines() if line.strip()]
        if summary:
            text = summary[0].strip()
    line = text.splitlines()[0] if text else ("" if isinstance(error, (str, type(None))) else type(error).__name__)
    return line[:limit] if limit is not None else line


__all__ = [name for name in list(globals()) if name.endswith("Error")]
