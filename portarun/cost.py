"""Cost per token and the memory roofline, with every input kept next to the result.

    $/1M tokens = $/hour / (tokens/s * 3600) * 1e6
    $/hour      = capex / (lifetime years * 8760 * utilization) + watts / 1000 * PUE * $/kWh
                  (or a cloud on-demand $/hour instead of the whole sum)

Utilization divides the capital term only: an owned machine costs its purchase
price whether it is busy or not, while it only draws (most of) its power while it
runs, and ``tokens/s`` is the throughput while it runs. The worked example in
HARDWARE.md (1.2 kW, PUE 1.25, $0.06/kWh -> $0.42 energy; $30k, 5 years, 60 %,
60 tokens/s -> $5.28 depreciation per 1M tokens) follows exactly this reading.

Roofline for memory-bound decoding (batch 1): every generated token reads all
weights and the KV cache once, so ``tokens/s <= bandwidth / (weight bytes + KV
bytes per token)``. An encoder pass over ``tokens_per_pass`` tokens reads the
weights once for all of them, which the ``tokens_per_pass`` argument expresses.

Hardware profiles are plain data (``HardwareProfile``); the sourced defaults
live in the conformance package's ``data/hardware.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .errors import UsageError

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class Sourced:
    """One input with where it came from: tag R (read in the source), I (inferred), U (uncertain), M (measured)."""

    value: float | None
    source: str = ""
    date: str = ""
    tag: str = "R"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_any(cls, data: Any) -> "Sourced":
        if isinstance(data, Sourced):
            return data
        if isinstance(data, Mapping):
            return cls(data.get("value"), data.get("source", ""), data.get("date", ""), data.get("tag", "R"))
        return cls(None if data is None else float(data), "", "", "R")


@dataclass(frozen=True)
class HardwareProfile:
    """One device: memory, bandwidth, compute, power and price, each value sourced and dated."""

    name: str
    description: str = ""
    kind: str = "gpu"  # gpu, cpu, tpu, accelerator
    memory_gb: Sourced = Sourced(None)
    bandwidth_tbs: Sourced = Sourced(None)
    fp16_tflops: Sourced = Sourced(None)
    int8_tops: Sourced = Sourced(None)
    tdp_w: Sourced = Sourced(None)
    capex_usd: Sourced = Sourced(None)
    cloud_usd_per_hour: Sourced = Sourced(None)
    cores: int | None = None  # CPUs: physical cores, to charge a share of the socket

    FIELDS = ("memory_gb", "bandwidth_tbs", "fp16_tflops", "int8_tops", "tdp_w", "capex_usd", "cloud_usd_per_hour")

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> "HardwareProfile":
        values = {key: Sourced.from_any(data[key]) for key in cls.FIELDS if key in data}
        return cls(name=name, description=data.get("description", ""), kind=data.get("kind", "gpu"),
                   cores=data.get("cores"), **values)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "description": self.description, "kind": self.kind,
                                "cores": self.cores}
        data.update({key: getattr(self, key).to_dict() for key in self.FIELDS})
        return data


@dataclass(frozen=True)
class CostAssumptions:
    """The knobs a user overrides: utilization, PUE, electricity price, lifetime.

    Defaults are the values the calculators cited in HARDWARE.md use: 60 % utilization
    (real 30-60 %), PUE 1.25 (calculators 1.18-1.25), $0.06/kWh (US industrial
    0.066-0.089, calculators 0.06-0.15), 5-year lifetime (hyperscalers 5-6 years).
    """

    utilization: float = 0.6
    pue: float = 1.25
    kwh_price_usd: float = 0.06
    lifetime_years: float = 5.0
    price_per_hour_usd: float | None = None  # explicit $/hour: replaces the whole $/hour sum
    basis: str = "auto"  # "auto": the cloud price when the profile has one, else owned; "cloud"; "owned"

    def __post_init__(self) -> None:
        if not 0 < self.utilization <= 1:
            raise UsageError(f"utilization must be in (0, 1], got {self.utilization}",
                             hint="give a fraction, e.g. --utilization 0.6")
        if self.pue < 1:
            raise UsageError(f"PUE must be >= 1, got {self.pue}")
        if self.lifetime_years <= 0 or self.kwh_price_usd < 0:
            raise UsageError("lifetime years must be > 0 and the electricity price >= 0")
        if self.price_per_hour_usd is not None and self.price_per_hour_usd < 0:
            raise UsageError("price per hour must be >= 0")
        if self.basis not in ("auto", "cloud", "owned"):
            raise UsageError(f"unknown cost basis '{self.basis}'", hint="choose auto, cloud or owned")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HourlyCost:
    """$/hour of a device, split into its terms, with the inputs used."""

    usd_per_hour: float | None
    capital_usd_per_hour: float = 0.0
    energy_usd_per_hour: float = 0.0
    basis: str = ""  # "cloud", "owned", "owned (energy only)", "user price", "unknown"
    inputs: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hourly_cost(profile: HardwareProfile | None, assumptions: CostAssumptions = CostAssumptions(), *,
                watts: float | None = None, watts_source: str = "") -> HourlyCost:
    """$/hour: explicit price, else the cloud price, else capex/(years*8760*util) + W/1000*PUE*$/kWh.

    ``watts`` replaces the profile's TDP (a measured power, or a CPU share of a socket).
    """
    inputs: dict[str, Any] = {"assumptions": assumptions.to_dict(),
                              "profile": profile.name if profile is not None else None}
    if assumptions.price_per_hour_usd is not None:
        return HourlyCost(assumptions.price_per_hour_usd, basis="user price",
                          inputs={**inputs, "price_per_hour_usd": assumptions.price_per_hour_usd})
    if profile is None:
        return HourlyCost(None, basis="unknown", inputs=inputs,
                          note="no hardware profile: pass --hardware or --price-per-hour")
    if assumptions.basis == "cloud" and profile.cloud_usd_per_hour.value is None:
        return HourlyCost(None, basis="unknown", inputs=inputs,
                          note=f"profile '{profile.name}' has no cloud price; pass --price-per-hour")
    if profile.cloud_usd_per_hour.value is not None and assumptions.basis != "owned":
        return HourlyCost(profile.cloud_usd_per_hour.value, basis="cloud",
                          inputs={**inputs, "cloud_usd_per_hour": profile.cloud_usd_per_hour.to_dict()})
    power = watts if watts is not None else profile.tdp_w.value
    capex = profile.capex_usd.value
    if power is None and capex is None:
        return HourlyCost(None, basis="unknown", inputs=inputs,
                          note=f"profile '{profile.name}' has neither a price nor a power figure; "
                               f"pass --price-per-hour")
    capital = capex / (assumptions.lifetime_years * HOURS_PER_YEAR * assumptions.utilization) if capex else 0.0
    energy = power / 1000.0 * assumptions.pue * assumptions.kwh_price_usd if power else 0.0
    inputs.update({"capex_usd": profile.capex_usd.to_dict(),
                   "watts": {"value": power, "source": watts_source or f"TDP: {profile.tdp_w.source}",
                             "tag": "M" if watts_source.startswith("measured") else profile.tdp_w.tag}})
    basis = "owned" if capex else "owned (energy only)"
    note = "" if capex else f"no purchase price in profile '{profile.name}': the capital term is left out"
    return HourlyCost(capital + energy, capital, energy, basis, inputs, note)


def usd_per_million_tokens(usd_per_hour: float, tokens_per_second: float) -> float:
    """$/1M tokens = $/hour / (tokens/s * 3600) * 1e6."""
    if tokens_per_second <= 0:
        raise UsageError(f"tokens/s must be positive to price a token, got {tokens_per_second}")
    return usd_per_hour / (tokens_per_second * 3600.0) * 1e6


@dataclass
class TokenCost:
    usd_per_million: float | None
    unit: str  # "tokens" or "items"
    per_second: float
    hourly: HourlyCost
    energy_usd_per_million: float | None = None
    capital_usd_per_million: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hourly"] = self.hourly.to_dict()
        return data


def cost_per_million(per_second: float, hourly: HourlyCost, unit: str = "tokens") -> TokenCost:
    """Price one million tokens (or items) at ``per_second`` throughput on ``hourly``."""
    if hourly.usd_per_hour is None or per_second <= 0:
        return TokenCost(None, unit, per_second, hourly)
    total = usd_per_million_tokens(hourly.usd_per_hour, per_second)
    energy = usd_per_million_tokens(hourly.energy_usd_per_hour, per_second)
    capital = usd_per_million_tokens(hourly.capital_usd_per_hour, per_second)
    return TokenCost(total, unit, per_second, hourly, energy, capital)


@dataclass
class Roofline:
    """Memory roofline: the tokens/s a device could reach if reading bytes were the only cost."""

    tokens_per_second: float
    bandwidth_bytes_per_s: float
    bytes_per_pass: float
    tokens_per_pass: float
    achieved_tokens_per_second: float | None = None
    cache_bytes: float | None = None  # the device's last-level cache, when known (CPUs)

    @property
    def bound(self) -> bool:
        """Whether memory bandwidth bounds a pass at all: not when the bytes fit in the last-level cache."""
        return self.bytes_per_pass > 0 and not (self.cache_bytes and self.bytes_per_pass <= self.cache_bytes)

    @property
    def fraction(self) -> float | None:
        """Achieved / roofline (model bandwidth utilization), never above 1: None when the roofline is
        not a bound here (bytes cache-resident) or the achieved rate beats it (then part of the bytes
        came from caches, or the bandwidth figure is too low; ``note`` says which)."""
        if self.achieved_tokens_per_second is None or self.tokens_per_second <= 0 or not self.bound:
            return None
        fraction = self.achieved_tokens_per_second / self.tokens_per_second
        return fraction if fraction <= 1.0 else None

    @property
    def note(self) -> str:
        if not self.bound:
            if self.bytes_per_pass <= 0:
                return "no weight bytes: not memory-bound"
            return (f"not memory-bound: {self.bytes_per_pass / 1e6:.3g} MB per pass fit in the "
                    f"{(self.cache_bytes or 0) / 1e6:.3g} MB last-level cache")
        if self.achieved_tokens_per_second is not None and self.fraction is None and self.tokens_per_second > 0:
            return (f"above the roofline ({self.achieved_tokens_per_second / self.tokens_per_second:.2f}x): part of "
                    "the bytes came from caches or the bandwidth figure is low; no utilization reported")
        return ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fraction"] = self.fraction
        data["note"] = self.note
        return data


def memory_roofline(bandwidth_bytes_per_s: float, weight_bytes: float, kv_bytes_per_token: float = 0.0, *,
                    tokens_per_pass: float = 1.0, achieved_tokens_per_second: float | None = None,
                    cache_bytes: float | None = None) -> Roofline:
    """tokens/s <= bandwidth / (weight bytes + KV bytes per token), for ``tokens_per_pass`` = 1 (decode).

    A pass over ``tokens_per_pass`` tokens reads the weights once and the KV bytes of each token:
    tokens/s <= bandwidth * tokens_per_pass / (weight bytes + KV bytes per token * tokens_per_pass).
    """
    if bandwidth_bytes_per_s <= 0:
        raise UsageError(f"bandwidth must be positive, got {bandwidth_bytes_per_s}")
    per_pass = weight_bytes + kv_bytes_per_token * tokens_per_pass
    if per_pass <= 0:
        return Roofline(math.inf, bandwidth_bytes_per_s, per_pass, tokens_per_pass, achieved_tokens_per_second,
                        cache_bytes)
    return Roofline(bandwidth_bytes_per_s * tokens_per_pass / per_pass, bandwidth_bytes_per_s, per_pass,
                    tokens_per_pass, achieved_tokens_per_second, cache_bytes)


def weight_bytes(model: Any) -> int:
    """Bytes of a model's weights as stored (4-bit weights: half a byte each, plus their scales and zero
    points, which are tensors too): what a pass must read at least once. A ``Model`` counts through its
    ``stats()`` (initializers and Constant-node tensors); a bare ModelProto counts its initializers."""
    stats = getattr(model, "stats", None)
    if callable(stats):
        return int(stats().parameter_bytes)
    import onnx
    from onnx import numpy_helper

    packed = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4, onnx.TensorProto.FLOAT4E2M1: 4}
    total = 0
    for tensor in model.graph.initializer:
        count = math.prod(tensor.dims)
        total += (count * packed[tensor.data_type] + 7) // 8 if tensor.data_type in packed \
            else numpy_helper.to_array(tensor).nbytes
    return total


__all__ = ["CostAssumptions", "HardwareProfile", "HourlyCost", "Roofline", "Sourced", "TokenCost",
           "cost_per_million", "hourly_cost", "memory_roofline", "usd_per_million_tokens", "weight_bytes"]
