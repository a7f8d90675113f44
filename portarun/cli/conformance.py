"""`portarun conformance`: parse the options into a ``ConformanceConfig``, call
``portarun_conformance.run`` (through ``cli/suite.py``, the one documented importer of the suite
inside ``portarun/``), print progress, the matrix and the verdict."""

from __future__ import annotations

import json
from typing import Any

import click

from . import suite as suite_api
from ._common import EXIT_FAILED, parse_dims, table
from .feed_options import FEED_KEYS, feed_source_options, feeds_from_options, has_user_feeds
from .fleet_options import fleet_options, parse_accelerator_types
from .hardware_cmd import assumptions_from, cost_options
from .options import dims_option, json_option, precision_option, runs_option, target_option, warmup_option

# the library's defaults (portarun_conformance.runner), repeated so `--help` does not import the suite
DEFAULT_OUT_DIR = "reports/conformance"
DEFAULT_THRESHOLD = 0.25


class ProgressPrinter:
    """The CLI's progress callback: a bar of cells, then one of node-suite chunks (stderr; one line
    per update off a terminal), and a line per finished node suite."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def _bar(self, kind: str, description: str, total: int, unit: str) -> Any:
        from ..progress import progress

        if kind not in self.bars:
            self.close()
            self.bars[kind] = progress(description, total=total, unit=unit)
        return self.bars[kind]

    def __call__(self, event: Any) -> None:
        if event.kind == "cell":
            result = event.result
            self._bar("cell", "model cells", event.total, "cell").update(
                note=f"{result.case} on {result.target} {result.precision}: {result.status.upper()}")
        elif event.kind == "node_chunk":
            self._bar("node_chunk", "onnx node suite", event.total, "chunk").update()
        elif event.kind == "node_suite":
            counts = event.counts
            line = (f"node suite on {event.target}: {counts['passed']}/{counts['total']} pass"
                    + (" (cached)" if counts.get("cached") else f" in {counts['seconds']:.0f} case-seconds")
                    + "".join(f"; {p}" for p in counts["problems"]))
            bar = self.bars.get("node_chunk")
            bar.write(line) if bar is not None else click.echo(line, err=True)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def conformance_options(function: Any) -> Any:
    """Every option of the command (besides the cost options), applied bottom-up."""
    options = [
        target_option(multiple=True, help="Target(s) to test; default every available one."),
        precision_option(multiple=True, help="Precision(s); default every precision each backend declares "
                                             "(unsupported ones are skipped with the reason)."),
        click.option("--suite", type=click.Choice(["models", "onnx-node", "all"]), default="all", show_default=True,
                     help="Model cases, the ONNX backend node suite, or both."),
        click.option("--node-suite", type=click.Choice(["sample", "full", "off"]), default=None,
                     help="ONNX node cases to run: 'sample' (every op type, 2 cases each; the default with no "
                          "MODELS), 'full' (every case; the default with --node-ops) or 'off' (the default when "
                          "MODELS are named)."),
        cost_options,
        click.option("--decode-cost", "decode_cost", multiple=True, metavar="DECODER",
                     help="Also price a built-in decoder (e.g. decoder-small) per CPU target x fp32/int8-weight/"
                          "int4-weight from measured decode tokens/s ($/1M tokens table; `portarun plan --from` reads it)."),
        click.option("--baseline", type=click.Path(exists=True, dir_okay=False),
                     help="An earlier --json report: flag parity, latency and cost regressions."),
        click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True,
                     help="Relative latency/cost increase counted as a regression."),
        click.option("--out-dir", default=DEFAULT_OUT_DIR, show_default=True,
                     help="Where the four reports go unless --json/--junit/--markdown/--plot name them."),
        json_option("JSON report (versioned schema) to PATH ('-': stdout, the summary goes to stderr)."),
        click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="JUnit XML report."),
        click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), help="Markdown summary."),
        click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
                     help="PNG: cost vs accuracy, latency bars."),
        runs_option(20, "Timed runs per cell after warm-up."),
        warmup_option(3),
        click.option("--timeout", "timeout_s", default=300.0, show_default=True,
                     help="Seconds a cell may take before its worker is killed and the cell fails."),
        dims_option("Symbolic dim size for MODEL feeds."),
        feed_source_options,
        click.option("--reference", help="Reference target for MODEL cases (default: by size, reference:cpu or "
                                         "onnxruntime:cpu)."),
        click.option("--no-localize", is_flag=True, help="Do not bisect failing cases to the first divergent node."),
        click.option("--no-isolation", is_flag=True, help="Run cells in this process (for debugging a backend)."),
        click.option("--plugin", "plugins", multiple=True, metavar="MODULE_OR_FILE",
                     help="Module or .py file each worker imports first (e.g. to register a test backend)."),
        click.option("--node-ops", help="Comma-separated op types to restrict the node suite to."),
        click.option("--no-cache", is_flag=True, help="Rerun the node suite even when a result for the same backend "
                                                      "code and SDK version is cached."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def config_from(models: tuple[str, ...], options: dict[str, Any]) -> Any:
    """The library's ConformanceConfig from the parsed command-line options."""
    cost_keys = ("price_per_hour", "utilization", "pue", "kwh_price", "lifetime_years", "basis")
    assumptions = assumptions_from(*(options.pop(k) for k in cost_keys))
    node_ops = options.pop("node_ops")
    feed_values = {key: options.pop(key) for key in FEED_KEYS}
    dims = parse_dims(options.pop("dims"))
    feeds = None
    if has_user_feeds(feed_values):
        if len(models) != 1:
            raise click.UsageError("--inputs/--input/--text feed one model: name exactly one MODEL")
        from ..api import load

        feeds = feeds_from_options(load(models[0]), feed_values, dims=dims).samples
    return suite_api.conformance().ConformanceConfig(
        models=models, assumptions=assumptions, dims=dims, feeds=feeds,
        localize=not options.pop("no_localize"), isolate=not options.pop("no_isolation"),
        use_cache=not options.pop("no_cache"),
        accelerator_types=parse_accelerator_types(options.pop("accelerator_types")),
        node_ops=[o.strip() for o in node_ops.split(",")] if node_ops else None, **options)


@click.command("conformance")
@click.argument("models", nargs=-1)
@conformance_options
@fleet_options
@click.pass_context
def conformance(ctx: click.Context, models: tuple[str, ...], **options: Any) -> None:
    """Prove parity and measure latency and cost of MODELS on every target and precision.

    With no arguments this is portarun's main job on a fresh machine: every built-in
    model on every available backend and precision, each cell in an isolated worker,
    compared with the reference, then the ONNX node suite; four reports are written
    to --out-dir. Exits 1 when any cell fails, crashes, times out or regresses.

    \b
    Examples:
      portarun conformance
      portarun conformance builtin:transformer -t onnxruntime:cpu -p fp32 --runs 50
      portarun conformance --suite models --baseline main.json --json pr.json
      portarun conformance --hardware h100-sxm --price-per-hour 2.5
      portarun conformance minilm.onnx --suite models --inputs feeds.npz -t openvino:cpu
      portarun conformance --ray auto --suite models --json fleet.json
    """
    config = config_from(models, options)
    click.echo(f"conformance: {', '.join(config.models) or 'the built-in models'} on "
               f"{', '.join(config.targets) or 'every available target'}; node suite: {config.node_suite_mode}", err=True)
    printer = ProgressPrinter()
    try:
        report = suite_api.conformance().run(config, progress=printer)
    finally:
        printer.close()
    to_stdout = config.json_path == "-"
    if to_stdout:
        click.echo(json.dumps(suite_api.report().finite(report.document), indent=1, default=str))
    print_summary(report, err=to_stdout)
    if not report.passed:
        ctx.exit(EXIT_FAILED)


def print_summary(report: Any, *, err: bool = False) -> None:
    """The matrix table, node-suite counts, failures with their localization, regressions, the verdict line."""
    document, matrix = report.document, report.matrix
    echo = (lambda text: click.echo(text, err=True)) if err else click.echo
    node_suite = matrix.node_suite or {}
    if node_suite.get("note"):
        click.echo(f"node suite skipped: {node_suite['note']}", err=True)
    if matrix.results:
        markdown = suite_api.markdown()
        echo(table(markdown.HEADERS, markdown.matrix_rows(document)))
    if node_suite.get("targets") and node_suite.get("mode"):
        echo(f"onnx node suite, {node_suite['mode']}: {node_suite.get('cases_run', '?')} of "
             f"{node_suite.get('cases_in_suite', '?')} cases per target"
             + (" (every op type, 2 cases each; --node-suite full runs all)" if node_suite["mode"] == "sample" else ""))
    for target, counts in node_suite.get("targets", {}).items():
        echo(f"onnx node suite {target}: {counts['passed']} passed, {counts['failed']} failed, "
             f"{counts['errors']} errors, {counts['skipped']} skipped of {counts['total']}"
             + "".join(f"; {p}" for p in counts["problems"]))
    _print_problems(document, echo)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(document["summary"]["counts"].items()))
    node_time = (node_suite.get("wall_time") or {}).get("value")
    written = ", ".join(str(p) for p in report.paths.values())
    plot_note = f" (plot not written: {report.plot_error})" if report.plot_error else ""
    echo(f"{counts or 'no cells'} in {matrix.seconds:.1f} s"
         + (f", node suite {node_time:.1f} s" if node_time is not None else "")
         + f", total {report.seconds:.1f} s; reports: " + (written or "-") + plot_note)


def _print_problems(document: dict[str, Any], echo: Any) -> None:
    for entry in document["results"]:
        if not entry["passed"]:
            echo(f"{entry['status'].upper()} {entry['case']} on {entry['target']} {entry['precision']}: "
                 f"{entry['message']}")
            if entry.get("localization"):
                echo(f"  {entry['localization'].get('summary') or entry['localization'].get('message')}")
    for regression in (document.get("baseline") or {}).get("regressions", []):
        echo(f"REGRESSION {regression['case']} on {regression['target']} {regression['precision']} "
             f"({regression['kind']}): {regression['message']}")


__all__ = ["ProgressPrinter", "conformance", "config_from", "print_summary"]
