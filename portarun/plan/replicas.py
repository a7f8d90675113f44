"""How many devices serve R requests/s at a candidate's batch, and what they cost a month."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .candidates import Candidate

HOURS_PER_MONTH = 730.0  # 8760 / 12


@dataclass
class Replicas:
    requests_per_s: float
    per_replica_requests_per_s: float | None
    replicas: int | None
    usd_per_hour: float | None
    monthly_usd: float | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def replicas_for(candidate: Candidate, requests_per_s: float) -> Replicas:
    """ceil(R / requests one replica serves per second), each replica one device as measured.

    A replica at batch b serves b requests per batch time (encoders: the measured items/s;
    decoders: b / (TTFT + (output tokens - 1) x TPOT)). Monthly cost = replicas x $/hour x 730 h.
    """
    per_replica = candidate.requests_per_s()
    if per_replica is None or per_replica <= 0:
        return Replicas(requests_per_s, per_replica, None, candidate.usd_per_hour, None,
                        "throughput not measured: replica count unknown")
    count = max(1, math.ceil(requests_per_s / per_replica - 1e-9))
    monthly = None if candidate.usd_per_hour is None else count * candidate.usd_per_hour * HOURS_PER_MONTH
    note = "" if monthly is not None else "no $/hour for this hardware: monthly cost unknown"
    return Replicas(requests_per_s, per_replica, count, candidate.usd_per_hour, monthly, note)


__all__ = ["HOURS_PER_MONTH", "Replicas", "replicas_for"]
