"""Importing TensorRT lazily, and a logger that keeps its messages for our error texts."""

from __future__ import annotations

from typing import Any

from portarun.plugin import BackendUnavailableError

BACKEND = "tensorrt"
INSTALL_HINT = ("pip install 'portarun[tensorrt]' (TensorRT 10 and cuda-python) on Linux or Windows "
                "with an NVIDIA GPU, its driver and CUDA 12")


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(f"backend '{BACKEND}' is unavailable: cannot import tensorrt ({exc})",
                                      backend=BACKEND, hint=INSTALL_HINT) from None
    except OSError as exc:  # the wheel is there but libnvinfer or the CUDA libraries are not
        raise BackendUnavailableError(f"backend '{BACKEND}' is unavailable: tensorrt is installed but its "
                                      f"libraries do not load ({exc})", backend=BACKEND,
                                      hint="install the CUDA 12 runtime and an NVIDIA driver matching TensorRT") from None
    return tensorrt


def make_logger(trt: Any, keep: int = 50) -> Any:
    """A ``trt.ILogger`` that forwards nothing to stdout and keeps warnings and errors.

    Messages land in ``logger.messages`` as ``(severity name, text)``; build and run
    errors quote the last of them, because TensorRT reports most failures only there.
    """

    class KeepingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[str, str]] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append((getattr(severity, "name", str(severity)), str(msg)))
                del self.messages[:-keep]

        def errors(self, last: int = 3) -> str:
            picked = [text for level, text in self.messages if "ERROR" in level] or [t for _, t in self.messages]
            return " | ".join(picked[-last:])

    return KeepingLogger()
