"""Candidates from reports made on other machines: conformance reports (``portarun.conformance-report/1``:
its matrix cells, and the decoders of its ``decode_cost`` section priced on decode tokens/s),
earlier plans (``portarun.plan/1``) and ``portarun bench --json`` sweeps (latency and price only: bench
measures no accuracy, so a floor marks them "unmeasured"). Each imported candidate keeps where and
when it was measured.

A report that embeds its hardware profile (conformance reports do, in each cell's
``cost.hardware_profile``; plans in ``cost.profile``) is re-priced with this plan's cost
assumptions, so every candidate is priced the same way; otherwise its own price is kept
and a note says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..cost import CostAssumptions, HardwareProfile
from ..errors import UsageError
from .candidates import Accuracy, Candidate, Source
from .pricing import price

CONFORMANCE_SCHEMA = "portarun.conformance-report/1"
PLAN_SCHEMA = "portarun.plan/1"
BENCH = "portarun bench --json sweep"  # bench documents carry no schema id


def _value(entry: Mapping[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(entry, Mapping):
            return None
        entry = entry.get(key)
    return entry


def _where(environment: Mapping[str, Any]) -> str:
    cpu = environment.get("cpu") or "unknown machine"
    cores = environment.get("cpu_count")
    host = environment.get("host")
    return f"{cpu}" + (f" ({cores} cores)" if cores else "") + (f" on {host}" if host else "")


def _conformance_cell(entry: Mapping[str, Any], source: Source) -> Candidate | None:
    perf, metrics, cost = entry.get("performance"), entry.get("metrics") or {}, entry.get("cost") or {}
    if not perf or entry.get("status") not in ("pass", "fail"):
        return None
    tokens = _value(perf, "tokens_per_second", "value")
    return Candidate(
        target=entry["target"], precision=entry["precision"], batch=int(perf.get("items_per_run") or 1),
        model=entry["case"], kind="encoder", hardware=cost.get("profile"),
        accuracy=Accuracy(cosine=_value(metrics, "cosine", "value"), top1=_value(metrics, "top1_agreement", "value"),
                          max_abs=_value(metrics, "max_abs", "value")),
        latency_median_ms=_value(perf, "median_latency", "value"), latency_p99_ms=_value(perf, "p99_latency", "value"),
        items_per_s=_value(perf, "throughput", "value"), tokens_per_s=tokens,
        unit=cost.get("unit") or ("tokens" if tokens else "items"),
        peak_memory_bytes=_value(perf, "peak_memory", "value"), energy_j_per_run=_value(perf, "energy_per_run", "value"),
        weight_bytes=_value(entry, "weight_bytes", "value"), usd_per_hour=_value(cost, "usd_per_hour", "value"),
        usd_per_1m=_value(cost, "usd_per_million", "value"),
        cost={"basis": cost.get("basis"), "note": cost.get("note", ""), "inputs": cost.get("inputs", {}),
              "profile": cost.get("hardware_profile")},
        source=source, notes=["conformance cell: one pass per run at the case's feed sizes"])


def _decode_cost_row(row: Mapping[str, Any], section: Mapping[str, Any], source: Source) -> Candidate | None:
    """A row of the report's ``decode_cost`` section: a decoder priced on its measured decode tokens/s,
    judged against the same backend's fp32 on next-token agreement teacher-forced on fp32's sequence (top1,
    one sample per new token; free-running greedy equality in reports that predate it) and logits cosine."""
    if row.get("error") or not row.get("decode_tokens_per_s"):
        return None
    profile = row.get("hardware_profile") or {}
    forced = row.get("next_token_agreement")
    top1, samples = (forced, int(section.get("new_tokens") or 1)) if forced is not None else \
        (row.get("tokens_equal_to_fp32"), 1)
    return Candidate(
        target=row["target"], precision=row["precision"], batch=int(section.get("batch") or 1),
        model=f"{section['model']} (decode)", kind="decoder", hardware=profile.get("name"),
        accuracy=Accuracy(cosine=row.get("logits_cosine_to_fp32"), top1=top1, samples=samples),
        ttft_ms=row.get("ttft_ms"), tpot_ms=row.get("tpot_median_ms"), tpot_p99_ms=row.get("tpot_p99_ms"),
        prompt_tokens=section.get("prompt_tokens"), output_tokens=section.get("new_tokens"),
        tokens_per_s=row["decode_tokens_per_s"], unit="tokens", weight_bytes=row.get("weight_bytes"),
        usd_per_hour=row.get("usd_per_hour"), usd_per_1m=row.get("usd_per_million_tokens"),
        cost={"basis": row.get("price_basis"), "note": row.get("price_source", ""), "inputs": {},
              "profile": profile or None},
        source=source, notes=[f"conformance decode_cost: {section.get('measured_by', 'decode tokens/s')}; "
                              "$/1M tokens from decode tokens/s"])


def _from_conformance(document: Mapping[str, Any], path: str) -> list[Candidate]:
    source = Source("imported", _where(document.get("environment") or {}), document.get("created", ""), path)
    sections = document.get("decode_cost") or ()
    # a decoder priced on its decode loop is not also a candidate at its matrix cells' prefill-pass rate
    # (a prompt pass prices a token far cheaper than generating one does)
    decoded = {name for section in sections for name in (section["model"], f"builtin:{section['model']}")}
    cells = [_conformance_cell(e, source) for e in document.get("results", []) if e.get("case") not in decoded]
    cells += [_decode_cost_row(row, section, source) for section in sections for row in section.get("rows", [])]
    return [c for c in cells if c is not None]


def _from_plan(document: Mapping[str, Any], path: str) -> list[Candidate]:
    out = []
    for entry in document.get("candidates", []):
        data = dict(entry)
        latency = data.pop("latency_ms", None) or {}
        data.update(latency_median_ms=latency.get("median"), latency_p99_ms=latency.get("p99"),
                    usd_per_1m=data.pop("usd_per_1m_tokens", None))
        candidate = Candidate.from_dict(data)
        original = candidate.source
        candidate.source = Source("imported", original.where, original.when,
                                  path if original.kind == "measured" else original.report)
        out.append(candidate)
    return out


def _bench_row(row: Mapping[str, Any], document: Mapping[str, Any], source: Source) -> Candidate:
    provenance, hourly = document.get("provenance") or {}, document.get("hourly") or {}
    bench, decoder = row.get("benchmark") or {}, row.get("decoder")
    candidate = Candidate(
        target=provenance.get("target", "?"), precision=provenance.get("precision", "fp32"), batch=int(row["batch"]),
        model=document.get("model", ""), kind="decoder" if decoder else "encoder",
        hardware=_value(hourly, "inputs", "profile"), weight_bytes=document.get("weight_bytes"),
        usd_per_hour=hourly.get("usd_per_hour"), usd_per_1m=row.get("usd_per_million"), unit=row.get("unit", "items"),
        cost={"basis": hourly.get("basis"), "note": hourly.get("note", ""), "inputs": hourly.get("inputs", {})},
        source=source, notes=["from a `portarun bench` sweep: no accuracy was measured there"])
    if decoder:
        candidate.ttft_ms, candidate.tpot_ms = decoder.get("ttft_ms"), decoder.get("tpot_median_ms")
        candidate.tpot_p99_ms, candidate.tokens_per_s = decoder.get("tpot_p99_ms"), row.get("per_second")
    else:
        candidate.latency_median_ms, candidate.latency_p99_ms = row.get("median_ms"), row.get("p99_ms")
        candidate.items_per_s, candidate.tokens_per_s = bench.get("items_per_second"), bench.get("tokens_per_second")
        candidate.peak_memory_bytes = bench.get("peak_memory_bytes")
    return candidate


def _from_bench(document: Mapping[str, Any], path: str) -> list[Candidate]:
    """A `portarun bench --json` sweep (unversioned): where = the device it ran on, when = the file's time."""
    import datetime as _dt

    when = _dt.datetime.fromtimestamp(Path(path).stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
    source = Source("imported", (document.get("provenance") or {}).get("device", ""), f"{when} (file time)", path)
    return [_bench_row(row, document, source) for row in document.get("rows", [])]


def _reprice(candidate: Candidate, assumptions: CostAssumptions | None) -> Candidate:
    """Price with this plan's assumptions and the profile the report embeds (this machine's --hardware
    does not apply: the candidate ran elsewhere)."""
    embedded = (candidate.cost or {}).get("profile")
    profile = None
    if isinstance(embedded, Mapping) and embedded.get("name"):
        profile = HardwareProfile.from_dict(embedded["name"], embedded)
    if profile is None or assumptions is None:
        candidate.notes.append("priced as in its report (no hardware profile embedded to re-price it)")
        return candidate
    return price(candidate, profile, assumptions)


def import_report(path: str | Path, *, assumptions: CostAssumptions | None = None) -> list[Candidate]:
    """The candidates of one conformance report or plan, marked with where and when they were measured."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read report '{path}': {exc}") from None
    kind = document.get("schema") if isinstance(document, dict) else None
    if kind is None and isinstance(document, dict) and {"model", "provenance", "rows"} <= set(document):
        kind = BENCH
    readers = {CONFORMANCE_SCHEMA: _from_conformance, PLAN_SCHEMA: _from_plan, BENCH: _from_bench}
    if kind not in readers:
        raise UsageError(f"'{path}' is a {kind!r} document; --from reads {', '.join(readers)}",
                         hint="give a `portarun conformance --json` report, a `portarun plan --json` plan or a "
                              "`portarun bench --json` sweep")
    return [_reprice(c, assumptions) for c in readers[kind](document, str(path))]


__all__ = ["import_report"]
