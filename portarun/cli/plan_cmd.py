"""`portarun plan`: the cheapest target x precision x batch (on which hardware) that meets an accuracy
floor and a latency SLO, measured here and/or imported from reports; or a small/large cascade."""

from __future__ import annotations

from typing import Any

import click

from . import suite
from ._common import EXIT_FAILED, parse_dims, parse_options, table
from .bench_cmd import _batches
from .hardware_cmd import assumptions_from
from .options import (backend_options_option, dims_option, json_option, precision_option, runs_option, seed_option,
                      target_option, warmup_option)


def _constraints(opts: dict[str, Any]) -> Any:
    from ..plan import Constraints, parse_floor

    if opts["slo_p99_ms"] is not None and (opts["ttft_ms"] is not None or opts["tpot_ms"] is not None):
        raise click.UsageError("give either --slo-p99-ms (encoders) or --ttft-ms/--tpot-ms (decoders), not both")
    floors = dict(parse_floor(text) for text in opts["floors"])
    return Constraints(floors=floors, p99_ms=opts["slo_p99_ms"], ttft_ms=opts["ttft_ms"], tpot_ms=opts["tpot_ms"])


def _profile_for(items: tuple[str, ...]) -> Any:
    """--hardware TARGET=PROFILE (or PROFILE for every target) -> a function target -> profile."""
    hardware = suite.hardware()
    get_profile, profile_for = hardware.get_profile, hardware.profile_for
    by_target, every = {}, None
    for item in items:
        target, sep, name = item.rpartition("=")
        if sep:
            by_target[target] = get_profile(name)
        else:
            every = get_profile(name)
    return lambda target: by_target.get(target) or every or profile_for(None, target)


def _eval_set(opts: dict[str, Any]) -> Any:
    if opts["labels"] and not opts["eval_path"]:
        raise click.UsageError("--labels needs --eval FEEDS.npz (labels belong to given eval samples)")
    if not opts["eval_path"]:
        return None
    from ..plan.evalset import load_eval

    return load_eval(opts["eval_path"], opts["labels"])


def _targets(opts: dict[str, Any]) -> list[str]:
    from ..registry import resolve_target

    if opts["targets"]:
        return [str(resolve_target(t)) for t in opts["targets"]]
    found = [str(t) for t in suite.conformance().default_targets()]  # the same default as conformance
    if not found:
        raise click.UsageError("no target available: `portarun backends` says why")
    return found


def _config(model: str | None, opts: dict[str, Any]) -> Any:
    from ..plan.measure import MeasureConfig
    from ..plan.run import CascadeConfig, PlanConfig

    if opts["escalate"] and opts["escalate_sweep"]:
        raise click.UsageError("give --escalate RULE or --escalate-sweep, not both")
    if opts["cascade"] and not (opts["escalate"] or opts["escalate_sweep"]):
        raise click.UsageError("--cascade needs --escalate 'max_prob<0.7' or --escalate-sweep")
    eval_set, dims = _eval_set(opts), parse_dims(opts["dims"])
    measure = cascade = None
    if model:
        measure = MeasureConfig(model, _targets(opts), list(opts["precisions"]) or None, _batches(opts["batch"]),
                                dims, runs=opts["runs"], warmup=opts["warmup"], eval_set=eval_set,
                                eval_samples=opts["samples"], prompt_tokens=opts["prompt_tokens"],
                                output_tokens=opts["output_tokens"], seed=opts["seed"], reference=opts["reference"],
                                options=parse_options(opts["options"]), quantize_floor=opts["quantize_floor"],
                                calibration=opts["calibration"])
    if opts["cascade"]:
        precision = (list(opts["precisions"]) or ["fp32"])[0]
        cascade = CascadeConfig(opts["cascade"][0], opts["cascade"][1], _targets(opts)[0], opts["escalate"],
                                opts["escalate_sweep"], small_precision=precision, eval_set=eval_set,
                                samples=max(opts["samples"], 64), dims=dims, seed=opts["seed"])
    constraints = _constraints(opts)
    assumptions = assumptions_from(opts["price_per_hour"], opts["utilization"], opts["pue"], opts["kwh_price"],
                                   opts["lifetime_years"], opts["basis"])
    return PlanConfig(constraints, assumptions, _profile_for(opts["hardware"]), measure, list(opts["reports"]),
                      opts["requests_per_s"], cascade, report_models=list(opts["from_models"]))


def _emit(run: Any, opts: dict[str, Any]) -> None:
    from ..plan.document import to_json, write_json
    from ..plan.markdown import write_markdown
    from ..plan.table import headers, rows, summary_lines

    document = run.document
    if opts["json_path"] == "-":
        click.echo(to_json(document), nl=False)
    else:
        click.echo(table(headers(document), rows(document)))
        for line in summary_lines(document):
            click.echo(line)
        click.echo(f"planned {len(document['candidates'])} candidates in {run.seconds:.1f} s")
    if opts["json_path"] and opts["json_path"] != "-":
        write_json(document, opts["json_path"])
    if opts["markdown_path"]:
        write_markdown(document, opts["markdown_path"])
    if opts["plot_path"]:
        from ..plan.plot import plot_plan

        plot_plan(document, opts["plot_path"])


def _progress(candidate: Any) -> None:
    what = candidate.error or (f"TTFT {candidate.ttft_ms:.3g} ms, TPOT {candidate.tpot_ms:.3g} ms"
                               if candidate.kind == "decoder" and candidate.ttft_ms is not None
                               else f"p99 {candidate.latency_p99_ms:.3g} ms" if candidate.latency_p99_ms else "")
    click.echo(f"measured {candidate.label()}: {what}", err=True)


CANDIDATE_OPTIONS = [
    target_option(multiple=True, help="Target(s) to measure (repeatable); default every available one."),
    precision_option(multiple=True, help="Precision(s) (repeatable); default fp32 + every quantized precision the "
                                          "target's backend declares."),
    click.option("--batch", default="1,2,4,8", show_default=True, help="Batch sizes to sweep, e.g. 1,2,4,8,16."),
    dims_option("Size of a symbolic dim, e.g. seq=128 (repeatable)."),
    click.option("--eval", "eval_path", type=click.Path(exists=True, dir_okay=False),
                  help="Eval feeds (.npz, one array per input, samples on axis 0); default random feeds."),
    click.option("--labels", type=click.Path(exists=True, dir_okay=False),
                  help="Labels (.npy): class ids (argmax compared) or a decoder's expected token ids."),
    click.option("--samples", default=8, show_default=True, help="Random eval samples (64 at least for --cascade)."),
    click.option("--prompt-tokens", default=16, show_default=True, help="Decoders: prompt length."),
    click.option("--output-tokens", default=16, show_default=True, help="Decoders: tokens generated per request."),
    click.option("--quantize-floor", metavar="METRIC=VALUE,...",
                  help="Floor of portarun.quantize's per-layer fallback (default: its per-precision default); "
                       "cosine=0 quantizes every layer (fast, no fallback) and leaves the judging to --floor."),
    click.option("--calibration", type=click.Path(exists=True, dir_okay=False), metavar="FEEDS.npz",
                 help="Calibration feeds for quantized precisions; default the --eval set, else random feeds."),
    runs_option(10, "Timed runs per encoder candidate after the warm-up."),
    warmup_option(2),
    seed_option("Seed of the random eval and timing feeds."),
    click.option("--reference", default="onnxruntime:cpu", show_default=True, help="Where the fp32 reference runs."),
    backend_options_option(),
]

LIMIT_OPTIONS = [
    click.option("--slo-p99-ms", type=float, help="Encoders: p99 latency limit per batch."),
    click.option("--ttft-ms", type=float, help="Decoders: time-to-first-token limit."),
    click.option("--tpot-ms", type=float, help="Decoders: median time-per-output-token limit."),
    click.option("--floor", "floors", multiple=True, metavar="METRIC=VALUE",
                  help="Accuracy floor vs fp32 (repeatable): cosine=0.999, top1=0.99, max_abs=0.01, exact=0.98 (labels)."),
    click.option("--requests-per-s", type=float, help="Load to size the fleet for: replicas and monthly cost."),
    click.option("--from", "reports", multiple=True, type=click.Path(exists=True, dir_okay=False),
                  help="A conformance report, plan or bench sweep (--json) made on another machine (repeatable)."),
    click.option("--from-model", "from_models", multiple=True, metavar="MODEL",
                  help="Plan only MODEL's candidates from --from reports (e.g. decoder-small: its decode-cost rows)."),
]

COST_OPTIONS = [
    click.option("--hardware", multiple=True, metavar="TARGET=PROFILE",
                  help="Profile to price a target with (or PROFILE for all); default this machine for CPU targets."),
    click.option("--price-per-hour", type=float, help="USD per hour of the device; replaces capex + energy."),
    click.option("--utilization", type=float, help="Fraction of hours an owned device is busy [default 0.6]."),
    click.option("--pue", type=float, help="Data-centre power usage effectiveness [default 1.25]."),
    click.option("--kwh-price", type=float, help="Electricity, USD per kWh [default 0.06]."),
    click.option("--lifetime-years", type=float, help="Depreciation period of an owned device [default 5]."),
    click.option("--basis", type=click.Choice(["auto", "cloud", "owned"]), default="auto", show_default=True,
                  help="Price a profile by its cloud $/hour or as owned (capex + energy)."),
]

CASCADE_OPTIONS = [
    click.option("--cascade", nargs=2, metavar="SMALL LARGE", help="Measure a small -> large cascade instead."),
    click.option("--escalate", metavar="RULE", help="Cascade rule on the small model: max_prob<0.7, margin<0.2, entropy>1."),
    click.option("--escalate-sweep", is_flag=False, flag_value="max_prob", default=None, metavar="[METRIC]",
                  help="Cascade: sweep every threshold of max_prob (or margin, entropy); pick the cheapest meeting the floor."),
]

OUTPUT_OPTIONS = [
    json_option("Write the plan as JSON to PATH ('-': stdout, instead of the table)."),
    click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), help="Markdown summary for CI."),
    click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="PNG: cost vs accuracy and latency."),
]


def _options(groups: list[list[Any]]) -> Any:
    """Apply option groups in order (click shows them in the order given)."""

    def decorate(function: Any) -> Any:
        for option in reversed([o for g in groups for o in g]):
            function = option(function)
        return function
    return decorate


@click.command("plan")
@click.argument("model", required=False)
@_options([CANDIDATE_OPTIONS, LIMIT_OPTIONS, CASCADE_OPTIONS, COST_OPTIONS, OUTPUT_OPTIONS])
@click.pass_context
def plan(ctx: click.Context, model: str | None, **opts: Any) -> None:
    """Find the cheapest deployment of MODEL that meets --floor and the SLO, from measurements.

    Candidates are targets x precisions x batch sizes, measured here (accuracy vs fp32 on the
    eval set, latency or TTFT/TPOT, throughput, memory, $/1M tokens) and/or imported with --from.
    Exits 0 when a candidate is feasible, 1 when none is (the closest misses are listed).

    \b
    Examples:
      portarun plan builtin:transformer -p fp32 -p int8 --batch 1,4 --slo-p99-ms 20 --floor cosine=0.999
      portarun plan decoder-small -t onnxruntime:cpu --ttft-ms 200 --tpot-ms 50 --floor top1=0.9
      portarun plan --from h100.json --from mi300x.json --floor cosine=0.999 --requests-per-s 500
      portarun plan --cascade small.onnx large.onnx --eval x.npz --labels y.npy --escalate-sweep --floor exact=0.9
    """
    from ..plan.run import run_plan, succeeded

    run = run_plan(_config(model, opts), progress=_progress)
    _emit(run, opts)
    if not succeeded(run):
        ctx.exit(EXIT_FAILED)
