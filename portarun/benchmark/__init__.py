"""Measure an Executable: warm-up, then N timed runs; medians, p99, throughput, peak memory, energy.

``timing`` times runs (and several runners side by side), ``sensors`` reads energy (RAPL, NVML) where a
sensor is readable, ``memory`` the process's peak resident memory, ``sweep`` measures and prices each
batch size, ``decode`` measures decode tokens/s of decoders side by side.
"""

from __future__ import annotations

from .decode import DecodeSpeed, measure_decode, measure_decode_side_by_side
from .memory import current_rss_bytes, peak_rss_bytes, reset_peak_memory
from .sensors import EnergyReading, energy_sensor
from .sweep import (BATCH_AXES, SEQUENCE_AXES, SweepConfig, SweepResult, bench_decoder, choose_batch,
                    decoder_signature, sweep, symbolic_axis)
from .timing import BenchmarkResult, benchmark_executable, interleaved_samples, measure, percentile

__all__ = ["BATCH_AXES", "BenchmarkResult", "DecodeSpeed", "EnergyReading", "SEQUENCE_AXES", "SweepConfig",
           "SweepResult", "bench_decoder", "benchmark_executable", "choose_batch", "current_rss_bytes",
           "decoder_signature", "energy_sensor", "interleaved_samples", "measure", "measure_decode",
           "measure_decode_side_by_side", "peak_rss_bytes", "percentile", "reset_peak_memory", "sweep",
           "symbolic_axis"]
