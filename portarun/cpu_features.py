"""What this x86-64 CPU can compute fast, read from ``/proc/cpuinfo`` (no vendor SDK).

Results differ between CPU kinds for reasons a test or a report must know: OpenVINO computes
bf16 only with AVX-512 BF16 or AMX, fp16 only with AVX512-FP16/AMX-FP16, and without VNNI its
int8 dot products go through ``vpmaddubsw``, whose 16-bit intermediate sums saturate (oneDNN,
"Nuances of int8 computations"). ::

    from portarun.plugin import cpu_features
    features = cpu_features()
    features.vnni, features.bf16, features.isa   # (True, True, "avx512_core_amx")

``ONEDNN_MAX_CPU_ISA`` (which oneDNN, and so OpenVINO's CPU plugin, honours) caps the features
reported here the same way, so ``ONEDNN_MAX_CPU_ISA=AVX2 pytest ...`` on an AVX-512 machine
both runs OpenVINO's AVX2 kernels and makes the tests expect what an AVX2-only CPU does.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

# the oneDNN ISA names in order, each with the cpuinfo flags it needs (one of each tuple)
ISA_LEVELS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("sse41", (("sse4_1",),)),
    ("avx", (("avx",),)),
    ("avx2", (("avx2",), ("fma",))),
    ("avx2_vnni", (("avx_vnni",),)),
    ("avx512_core", (("avx512f",), ("avx512bw",), ("avx512vl",), ("avx512dq",))),
    ("avx512_core_vnni", (("avx512_vnni",),)),
    ("avx512_core_bf16", (("avx512_bf16",),)),
    ("avx512_core_fp16", (("avx512_fp16",),)),
    ("avx512_core_amx", (("amx_tile",), ("amx_int8",), ("amx_bf16",))),
    ("avx512_core_amx_fp16", (("amx_fp16",),)),
)
ISA_NAMES = tuple(name for name, _ in ISA_LEVELS)
# oneDNN spellings of ONEDNN_MAX_CPU_ISA that name a level above under another name
ISA_ALIASES = {"avx10_1_512": "avx512_core_fp16", "avx10_1_512_amx": "avx512_core_amx",
               "avx10_1_512_amx_fp16": "avx512_core_amx_fp16", "all": "avx512_core_amx_fp16"}


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's instruction-set level (oneDNN's name) and what it implies for inference numerics."""

    isa: str  # highest oneDNN ISA level the CPU (capped by ONEDNN_MAX_CPU_ISA) reaches, "" if none
    flags: frozenset[str]  # the cpuinfo flags, as read
    capped_by: str = ""  # the ONEDNN_MAX_CPU_ISA value in effect, if any

    def reaches(self, level: str) -> bool:
        """True when the (capped) ISA level is ``level`` or above in oneDNN's order."""
        return bool(self.isa) and ISA_NAMES.index(self.isa) >= ISA_NAMES.index(level)

    def _has(self, flag: str, level: str) -> bool:
        return flag in self.flags and self.reaches(level)

    @property
    def avx2(self) -> bool:
        return self.reaches("avx2")

    @property
    def avx512(self) -> bool:
        return self.reaches("avx512_core")

    @property
    def vnni(self) -> bool:
        """u8*s8 dot products accumulate in 32 bits (VNNI or AMX); without it 16-bit sums saturate."""
        # oneDNN's avx512_core does not contain avx2_vnni (two branches), so a cap there turns VNNI off
        avx_vnni = "avx_vnni" in self.flags and (self.isa == "avx2_vnni" or self.reaches("avx512_core_vnni"))
        return avx_vnni or self._has("avx512_vnni", "avx512_core_vnni") or self._has("amx_int8", "avx512_core_amx")

    @property
    def bf16(self) -> bool:
        return self._has("avx512_bf16", "avx512_core_bf16") or self._has("amx_bf16", "avx512_core_amx")

    @property
    def fp16(self) -> bool:
        return self._has("avx512_fp16", "avx512_core_fp16") or self._has("amx_fp16", "avx512_core_amx_fp16")

    @property
    def amx(self) -> bool:
        return self._has("amx_tile", "avx512_core_amx")

    def describe(self) -> str:
        names = [n for n, ok in (("AVX2", self.avx2), ("AVX-512", self.avx512), ("VNNI", self.vnni),
                                 ("BF16", self.bf16), ("FP16", self.fp16), ("AMX", self.amx)) if ok]
        capped = f", capped by ONEDNN_MAX_CPU_ISA={self.capped_by}" if self.capped_by else ""
        return f"{self.isa or platform.machine()} ({' '.join(names) or 'no SIMD extensions found'}{capped})"


def _read_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):  # x86, or Arm's name for the same list
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def features_from(flags: frozenset[str] | set[str], max_isa: str = "") -> CpuFeatures:
    """The ISA level ``flags`` reach, capped at ``max_isa`` (an ONEDNN_MAX_CPU_ISA value) if given."""
    reached = ""
    for name, needs in ISA_LEVELS:
        if not all(any(flag in flags for flag in options) for options in needs):
            if name in ("avx2_vnni",):  # AVX-VNNI is optional on the way to AVX-512
                continue
            break
        reached = name
    cap = ISA_ALIASES.get(max_isa.strip().lower(), max_isa.strip().lower())
    if cap in ISA_NAMES and reached and ISA_NAMES.index(reached) > ISA_NAMES.index(cap):
        reached = cap
    return CpuFeatures(reached, frozenset(flags), max_isa.strip() if cap in ISA_NAMES else "")


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This machine's features (read once), capped by ``ONEDNN_MAX_CPU_ISA`` when it is set."""
    return features_from(_read_flags(), os.environ.get("ONEDNN_MAX_CPU_ISA", ""))


def last_level_cache_bytes() -> int | None:
    """The largest cache of CPU 0 (L3 on servers) from sysfs, or None where sysfs does not say."""
    best = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        try:
            size = int(text.rstrip("KMG")) * scale
        except ValueError:
            continue
        best = max(best or 0, size)
    return best


__all__ = ["CpuFeatures", "ISA_NAMES", "cpu_features", "features_from", "last_level_cache_bytes"]
