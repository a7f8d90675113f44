"""Put a price and a memory limit on a measured candidate from a hardware profile (portarun.cost)."""

from __future__ import annotations

from ..cost import CostAssumptions, HardwareProfile, cost_per_million, hourly_cost
from .candidates import Candidate


def price(candidate: Candidate, profile: HardwareProfile | None, assumptions: CostAssumptions, *,
          device_memory_bytes: int | None = None) -> Candidate:
    """Fill in $/hour, $/1M tokens (items when the model has no sequence axis) and the device memory.

    The price is $/hour / (tokens/s x 3600) x 1e6 at the candidate's measured throughput;
    the inputs (profile values with sources, assumptions, basis) are kept in ``cost``.
    ``device_memory_bytes`` (e.g. this machine's RAM) is used when the profile has no memory figure.
    """
    per_second = candidate.tokens_per_s if candidate.unit == "tokens" else candidate.items_per_s
    hourly = hourly_cost(profile, assumptions)
    candidate.hardware = profile.name if profile is not None else candidate.hardware
    candidate.usd_per_hour = hourly.usd_per_hour
    if per_second:
        priced = cost_per_million(per_second, hourly, candidate.unit)
        candidate.usd_per_1m = priced.usd_per_million
        energy, capital = priced.energy_usd_per_million, priced.capital_usd_per_million
    else:
        candidate.usd_per_1m, energy, capital = None, None, None
    candidate.cost = {"basis": hourly.basis, "usd_per_hour": hourly.usd_per_hour, "note": hourly.note,
                      "energy_usd_per_1m": energy, "capital_usd_per_1m": capital, "inputs": hourly.inputs,
                      "profile": profile.to_dict() if profile is not None else None}
    memory = profile.memory_gb.value if profile is not None else None
    if memory:
        candidate.device_memory_bytes = int(memory * 1e9)
    elif device_memory_bytes:
        candidate.device_memory_bytes = device_memory_bytes
    return candidate


__all__ = ["price"]
