"""CPU feature detection: the ISA level from cpuinfo flags, capped like oneDNN caps it."""

from __future__ import annotations

from portarun.plugin import cpu_features
from portarun.cpu_features import features_from

AVX2 = {"sse4_1", "avx", "avx2", "fma"}  # AMD EPYC Zen 2/3
SKYLAKE_X = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
CASCADE_LAKE = SKYLAKE_X | {"avx512_vnni"}
SAPPHIRE_RAPIDS = CASCADE_LAKE | {"avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"}


def test_levels_of_known_cpu_kinds():
    kinds = {"avx2": AVX2, "avx512_core": SKYLAKE_X, "avx512_core_vnni": CASCADE_LAKE,
             "avx512_core_amx": SAPPHIRE_RAPIDS}
    for isa, flags in kinds.items():
        assert features_from(flags).isa == isa
    assert not features_from(AVX2).vnni and not features_from(SKYLAKE_X).vnni and features_from(CASCADE_LAKE).vnni
    spr = features_from(SAPPHIRE_RAPIDS)
    assert spr.vnni and spr.bf16 and spr.fp16 and spr.amx and "AMX" in spr.describe()


def test_onednn_cap_turns_features_off():
    capped = features_from(SAPPHIRE_RAPIDS, "AVX2")
    assert capped.isa == "avx2" and not (capped.vnni or capped.bf16 or capped.fp16 or capped.avx512)
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in capped.describe()
    assert not features_from(SAPPHIRE_RAPIDS, "AVX512_CORE").vnni  # avx2_vnni is not under avx512_core
    assert features_from(SAPPHIRE_RAPIDS, "avx512_core_bf16").bf16
    assert features_from(SAPPHIRE_RAPIDS, "nonsense").isa == "avx512_core_amx"  # oneDNN ignores it too


def test_this_machine_is_read():
    features = cpu_features()
    assert features.flags and features.isa  # every x86-64 Linux CPU lists flags and has at least SSE4.1
