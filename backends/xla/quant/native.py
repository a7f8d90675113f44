"""QMatMul's ``native`` form (CPUs, the default there when it builds): portarun's own XLA custom call,
``qmatmul_kernel.cc``, which reads the int8/int4 weight once: 8-bit weights widened to float and accumulated
in float32 in registers, 4-bit ones in an exact integer dot with the float activations written as two 16-bit
digits per block (error <= 2^-31 of the block's largest value, below float32's rounding of it).

The kernel is compiled on first use with the machine's C++ compiler (``$CXX``, else ``g++``/``c++``)
against the XLA FFI headers jaxlib ships, for this CPU (``-march=native``: AVX-512, AVX2 or plain C++), and
kept in the cache (``<cache root>/xla/kernels``) under a key of its source, jaxlib's version, the compiler
and this CPU's flags, so a new CPU kind or jaxlib builds anew. Without a compiler, the build failing or
``PORTARUN_XLA_NATIVE=0``, ``kernel()`` says why (``PORTARUN_XLA_NATIVE_MARCH`` builds for another
``-march``, e.g. 'haswell' for AVX2 or 'x86-64' for the plain C++ loop) and 'auto' falls back to the ``int8dot`` form (recorded in
provenance); asking for ``native`` explicitly then fails with that reason.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from portarun.plugin import cache_dir, cpu_features

TARGET = "portarun_qmatmul"
TILE = 64  # output columns per tile; the kernel's kTile
SOURCE = Path(__file__).with_name("qmatmul_kernel.cc")
BUILD_TIMEOUT_S = 180
# what the kernel's dot receives (provenance): 8-bit weights meet x itself, 4-bit ones its two 16-bit digits
ACTIVATIONS = "float (4-bit weights: 2 int16 digits per block, to 2^-31 of its max)"


@dataclass(frozen=True)
class Kernel:
    """The outcome of building and registering the kernel in this process."""

    available: bool
    detail: str  # 'avx512 (g++ 12.2.0)' when available, else why not


_lock = threading.Lock()
_kernel: Kernel | None = None


def kernel() -> Kernel:
    """Build (once per cache key), load and register the kernel; never raises."""
    global _kernel
    with _lock:
        if _kernel is None:
            _kernel = _build_and_register()
        return _kernel


def native_kernel_detail(platform: str) -> str | None:
    """For provenance: the kernel's build on CPUs ('avx512 (g++ ...)') or why it is unavailable."""
    if platform != "cpu":
        return None
    built = kernel()
    return built.detail if built.available else f"unavailable: {built.detail}"


def _compiler() -> str | None:
    for name in filter(None, (os.environ.get("CXX"), "g++", "c++", "clang++")):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_flags() -> str:
    """The machine and its CPU flags: a build for -march=native is only good for a CPU with the same ones."""
    import platform

    return f"{platform.machine()} {' '.join(sorted(cpu_features().flags))}"


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)


def _build_and_register() -> Kernel:
    if os.environ.get("PORTARUN_XLA_NATIVE", "1") == "0":
        return Kernel(False, "PORTARUN_XLA_NATIVE=0")
    import jax
    import jaxlib

    compiler = _compiler()
    if compiler is None:
        return Kernel(False, "no C++ compiler (set CXX or install g++)")
    try:
        version = _run([compiler, "--version"]).stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        return Kernel(False, f"{compiler} --version failed: {exc}")
    include = jax.ffi.include_dir()
    march = os.environ.get("PORTARUN_XLA_NATIVE_MARCH", "native")  # e.g. 'haswell': an AVX2 build anywhere
    flags = ["-O3", f"-march={march}", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{include}"]
    key = hashlib.sha256("\0".join([SOURCE.read_text(), jaxlib.__version__, version, _cpu_flags(), *flags])
                         .encode()).hexdigest()[:20]
    library = cache_dir() / "xla" / "kernels" / f"qmatmul-{key}.so"
    if not library.exists():
        reason = _compile(compiler, flags, library)
        if reason:
            return Kernel(False, reason)
    try:
        lib = ctypes.CDLL(str(library))
        lib.PortarunQMatMulIsa.restype = ctypes.c_char_p
        isa = lib.PortarunQMatMulIsa().decode()
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.PortarunQMatMul), platform="cpu")
    except (OSError, AttributeError, ValueError, RuntimeError) as exc:
        return Kernel(False, f"cannot load {library}: {exc}")
    return Kernel(True, f"{isa} ({version}, -march={march})")


def _compile(compiler: str, flags: list[str], library: Path) -> str | None:
    """Compile into a temporary sibling and rename it into place (another process may build the same key
    at the same time: both renames leave a whole library). Returns why it failed, or None."""
    library.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{library.name}.", suffix=".tmp", dir=library.parent)
    os.close(fd)
    try:
        result = _run([compiler, *flags, str(SOURCE), "-o", temporary])
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return f"{Path(compiler).name} failed to build {SOURCE.name} ({last[:200]})"
        os.replace(temporary, library)
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{Path(compiler).name} failed to build {SOURCE.name}: {exc}"
    finally:
        Path(temporary).unlink(missing_ok=True)


def qmatmul_native(n, x, wq, scale, zero=None):
    """``wq`` [T, G, S, 64] int8 (``fusion._store_native``), scale [G, T * 64] float32, zero [G, T * 64]
    int8 or None. Attrs: ``k`` and ``n`` (the weight's K and N as written), ``packed``, ``block`` (rows of
    K per group, padded)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    dtype = x.dtype
    K, N, block = int(n.attr("k")), int(n.attr("n")), int(n.attr("block"))
    groups = wq.shape[1]
    lead = x.shape[:-1]
    rows = math.prod(lead)
    if rows == 0:
        return jnp.zeros(lead + (N,), dtype)
    xf = x.reshape(rows, K).astype(jnp.float32)
    if groups * block > K:  # the padded weight rows are zero
        xf = jnp.pad(xf, ((0, 0), (0, groups * block - K)))
    zero = jnp.zeros((0,), jnp.int8) if zero is None else zero
    call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((rows, N), jnp.float32), vmap_method="sequential")
    y = call(xf, wq, scale, zero, bits=np.int64(4 if n.attr("packed") else 8), block=np.int64(block))
    return y.reshape(lead + (N,)).astype(dtype)


__all__ = ["ACTIVATIONS", "Kernel", "TARGET", "TILE", "kernel", "native_kernel_detail", "qmatmul_native"]
