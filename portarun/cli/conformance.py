"""`portarun conformance`: cases x targets x precisions in isolated workers; parity, provenance,
latency, cost; the ONNX node suite; JSON / JUnit / Markdown / PNG reports; baseline regressions."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import EXIT_FAILED, parse_dims, table
from .hardware_cmd import assumptions_from, cost_options

DEFAULT_OUT_DIR = "reports/conformance"


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / max(total, 1))
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


@click.command("conformance")
@click.argument("models", nargs=-1)
@click.option("-t", "--target", "targets", multiple=True, help="Target(s) to test; default every available one.")
@click.option("-p", "--precision", "precisions", multiple=True,
              help="Precision(s); default every precision each backend declares (unsupported ones are skipped "
                   "with the reason).")
@click.option("--suite", type=click.Choice(["models", "onnx-node", "all"]), default="all", show_default=True,
              help="Model cases, the ONNX backend node suite, or both.")
@cost_options
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False),
              help="An earlier --json report: flag parity, latency and cost regressions.")
@click.option("--threshold", type=float, default=0.25, show_default=True,
              help="Relative latency/cost increase counted as a regression.")
@click.option("--out-dir", default=DEFAULT_OUT_DIR, show_default=True,
              help="Where the four reports go unless --json/--junit/--markdown/--plot name them.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="JSON report (versioned schema).")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="JUnit XML report.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), help="Markdown summary.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="PNG: cost vs accuracy, latency bars.")
@click.option("--runs", default=20, show_default=True, help="Timed runs per cell after warm-up.")
@click.option("--warmup", default=3, show_default=True, help="Untimed runs before timing.")
@click.option("--timeout", "timeout_s", default=300.0, show_default=True,
              help="Seconds a cell may take before its worker is killed and the cell fails.")
@click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE", help="Symbolic dim size for MODEL feeds.")
@click.option("--reference", help="Reference target for MODEL cases (default: by size, reference:cpu or "
                                  "onnxruntime:cpu).")
@click.option("--no-localize", is_flag=True, help="Do not bisect failing cases to the first divergent node.")
@click.option("--no-isolation", is_flag=True, help="Run cells in this process (for debugging a backend).")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE_OR_FILE",
              help="Module or .py file each worker imports first (e.g. to register a test backend).")
@click.option("--node-ops", help="Comma-separated op types to restrict the node suite to.")
@click.option("--no-cache", is_flag=True, help="Rerun the node suite even when a result for the same backend "
                                               "code and SDK version is cached.")
@click.pass_context
def conformance(ctx: click.Context, models: tuple[str, ...], targets: tuple[str, ...], precisions: tuple[str, ...],
                suite: str, hardware: str | None, price_per_hour: float | None, utilization: float | None,
                pue: float | None, kwh_price: float | None, lifetime_years: float | None, basis: str,
                baseline: str | None, threshold: float, out_dir: str, json_path: str | None,
                junit_path: str | None, markdown_path: str | None, plot_path: str | None, runs: int, warmup: int,
                timeout_s: float, dims: tuple[str, ...], reference: str | None, no_localize: bool,
                no_isolation: bool, plugins: tuple[str, ...], node_ops: str | None, no_cache: bool) -> None:
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
    """
    from portarun_conformance import builtin_cases, case_for, default_targets, run_matrix
    from portarun_conformance.baseline import find_regressions
    from portarun_conformance.harness import MatrixResult
    from portarun_conformance.junit import write_junit
    from portarun_conformance.markdown import write_markdown
    from portarun_conformance.report import attach_costs, build_report, load_report, write_json

    from ..registry import resolve_target

    import time

    started = time.perf_counter()
    assumptions = assumptions_from(price_per_hour, utilization, pue, kwh_price, lifetime_years, basis)
    chosen = [str(resolve_target(t)) for t in targets] or [str(t) for t in default_targets()]
    if not chosen:
        raise click.UsageError("no target available: `portarun backends` says why")
    extra_dims = parse_dims(dims)
    cases = ([case_for(m, extra_dims, reference=reference) for m in models] if models else builtin_cases())
    old = load_report(baseline) if baseline else None

    matrix = MatrixResult([])
    if suite in ("models", "all"):
        def progress(result, done: int, total: int) -> None:
            click.echo(f"{_bar(done, total)} {result.case} on {result.target} {result.precision}: "
                       f"{result.status.upper()}", err=True)

        matrix = run_matrix(cases, chosen, list(precisions) or None, runs=runs, warmup=warmup, timeout_s=timeout_s,
                            isolate=not no_isolation, plugins=plugins, localize_failures=not no_localize,
                            progress=progress)
    if suite in ("onnx-node", "all"):
        from portarun_conformance.nodes import run_node_suites

        def node_progress(target: str, counts: dict) -> None:
            click.echo(f"node suite on {target}: {counts['passed']}/{counts['total']} pass"
                       + (" (cached)" if counts.get("cached") else f" in {counts['seconds']:.0f} case-seconds")
                       + "".join(f"; {p}" for p in counts["problems"]), err=True)

        ops = [o.strip() for o in node_ops.split(",")] if node_ops else None
        node_started = time.perf_counter()
        matrix.node_suite = run_node_suites(chosen, isolate=not no_isolation, plugins=plugins, progress=node_progress,
                                            ops=ops, use_cache=not no_cache)
        matrix.node_suite["wall_time"] = {"value": time.perf_counter() - node_started, "unit": "s"}
        if matrix.node_suite.get("note"):
            click.echo(f"node suite skipped: {matrix.node_suite['note']}", err=True)

    attach_costs(matrix, hardware, assumptions)
    document = build_report(matrix, hardware=hardware, assumptions=assumptions)
    if old is not None:
        regressions = find_regressions(document, old, threshold=threshold)
        document["baseline"] = {"path": str(baseline), "threshold": threshold, "regressions": regressions}
        document["summary"]["passed"] = document["summary"]["passed"] and not regressions

    document["summary"]["total_wall_time"] = {"value": time.perf_counter() - started, "unit": "s"}
    out = Path(out_dir)
    paths = {"json": json_path or out / "report.json", "junit": junit_path or out / "report.xml",
             "markdown": markdown_path or out / "summary.md", "plot": plot_path or out / "plot.png"}
    write_json(document, paths["json"])
    write_junit(document, paths["junit"])
    write_markdown(document, paths["markdown"])
    plot_note = ""
    try:
        from portarun_conformance.plot import plot_report

        plot_report(document, paths["plot"])
    except Exception as exc:  # the plot is the least essential report: say why it is missing
        plot_note = f" (plot not written: {exc})"

    from portarun_conformance.markdown import HEADERS, matrix_rows

    if matrix.results:
        click.echo(table(HEADERS, matrix_rows(document)))
    node_suite = matrix.node_suite or {}
    for target, counts in node_suite.get("targets", {}).items():
        click.echo(f"onnx node suite {target}: {counts['passed']} passed, {counts['failed']} failed, "
                   f"{counts['errors']} errors, {counts['skipped']} skipped of {counts['total']}"
                   + "".join(f"; {p}" for p in counts["problems"]))
    for entry in document["results"]:
        if not entry["passed"]:
            click.echo(f"{entry['status'].upper()} {entry['case']} on {entry['target']} {entry['precision']}: "
                       f"{entry['message']}")
            if entry.get("localization"):
                click.echo(f"  {entry['localization'].get('summary') or entry['localization'].get('message')}")
    for regression in (document.get("baseline") or {}).get("regressions", []):
        click.echo(f"REGRESSION {regression['case']} on {regression['target']} {regression['precision']} "
                   f"({regression['kind']}): {regression['message']}")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(document["summary"]["counts"].items()))
    node_time = (node_suite.get("wall_time") or {}).get("value")
    click.echo(f"{counts or 'no cells'} in {matrix.seconds:.1f} s"
               + (f", node suite {node_time:.1f} s" if node_time is not None else "")
               + f", total {time.perf_counter() - started:.1f} s; reports: "
               + ", ".join(str(p) for k, p in paths.items() if k != "plot" or not plot_note) + plot_note)
    if not document["summary"]["passed"]:
        ctx.exit(EXIT_FAILED)
