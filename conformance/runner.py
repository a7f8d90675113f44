"""One conformance run as a library call: cases x targets x precisions, the ONNX node suite, costs,
baseline regressions and the four reports, from a plain config to a plain result.

``portarun conformance`` is a thin layer over :func:`run`; a plan command or a Ray driver calls it
the same way::

    from portarun_conformance import ConformanceConfig, run
    report = run(ConformanceConfig(models=["builtin:mlp"], targets=["onnxruntime:cpu"], suite="models"))
    report.passed, report.document["results"], report.paths["json"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from portarun import UsageError
from portarun.cost import CostAssumptions
from portarun.registry import resolve_target

from .baseline import DEFAULT_THRESHOLD, find_regressions
from .cases import Case, builtin_cases, case_for
from .harness import CaseResult, MatrixResult, default_targets, run_matrix
from .hardware import default_assumptions
from .junit import write_junit
from .markdown import write_markdown
from .report import attach_costs, build_report, load_report, write_json

DEFAULT_OUT_DIR = "reports/conformance"
SUITES = ("models", "onnx-node", "all")
NODE_SUITE_MODES = ("sample", "full", "off")
# report kind -> file name inside ConformanceConfig.out_dir when no explicit path is given
REPORT_FILES = {"json": "report.json", "junit": "report.xml", "markdown": "summary.md", "plot": "plot.png"}


@dataclass
class ConformanceConfig:
    """What to run and where the reports go; every field has the CLI's default."""

    models: Sequence[str] = ()  # builtin:NAME or paths; empty: every built-in case
    targets: Sequence[str] = ()  # empty: every available target
    precisions: Sequence[str] = ()  # empty: each backend's declared precisions
    suite: str = "all"  # "models", "onnx-node" or "all"
    hardware: str | None = None  # hardware profile to price with; None: this machine for CPU targets
    assumptions: CostAssumptions | None = None  # None: the sourced defaults (hardware.default_assumptions)
    baseline: str | None = None  # an earlier JSON report: flag regressions against it
    threshold: float = DEFAULT_THRESHOLD  # relative latency/cost increase counted as a regression
    out_dir: str = DEFAULT_OUT_DIR
    # explicit report paths (None: out_dir / REPORT_FILES[kind]); json "-" writes no JSON file
    json_path: str | None = None
    junit_path: str | None = None
    markdown_path: str | None = None
    plot_path: str | None = None
    runs: int = 20
    warmup: int = 3
    timeout_s: float = 300.0  # per cell, before its worker is killed
    dims: Mapping[str, int] = field(default_factory=dict)  # symbolic dim sizes for user-named models
    # the user's feeds for user-named models: an .npz or a folder of them, or a list of feed dicts
    # (portarun.samples); each cell checks and measures on the first sample; None: random feeds
    feeds: Any = None
    reference: str | None = None  # reference target for user-named models (None: by model size)
    localize: bool = True  # bisect failing cells to the first divergent node
    isolate: bool = True  # each cell in a worker process
    plugins: Sequence[str] = ()  # modules or .py files each worker imports first
    node_ops: Sequence[str] | None = None  # restrict the node suite to these op types
    use_cache: bool = True  # reuse a node-suite result for the same backend code and SDK
    # a Ray fleet for the model cells (extra ``ray``): an address, "auto" or "local"; None: this machine
    ray: str | None = None
    placement_timeout_s: float = 30.0  # on Ray: how long a target no node offers may wait for one to join
    accelerator_types: Mapping[str, str] = field(default_factory=dict)  # on Ray: target -> accelerator type
    # "sample" (every op type, a few cases each), "full" (all ~1,900 cases) or "off";
    # None: "sample" for the built-in run ("full" with node_ops), "off" when models are named
    # (unless suite="onnx-node")
    node_suite: str | None = None
    # built-in decoders whose $/1M tokens per CPU target x {fp32, int8-weight, int4-weight} is measured from
    # decode tokens/s (the report's "decode_cost" section, read by `portarun plan --from`); () = none
    decode_cost: Sequence[str] = ()
    decode_new_tokens: int = 32

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise UsageError(f"unknown suite '{self.suite}'", hint=f"choose one of {', '.join(SUITES)}")
        if self.node_suite is not None and self.node_suite not in NODE_SUITE_MODES:
            raise UsageError(f"unknown node-suite mode '{self.node_suite}'",
                             hint=f"choose one of {', '.join(NODE_SUITE_MODES)}")

    @property
    def node_suite_mode(self) -> str:
        """What runs of the ONNX node suite: "sample", "full" or "off"."""
        if self.suite == "models":
            return "off"
        if self.node_suite is not None:
            return self.node_suite
        if self.models and self.suite != "onnx-node":
            return "off"
        return "full" if self.node_ops else "sample"  # named ops: all of their cases


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a run: a finished cell (``kind="cell"``), a finished chunk of node cases
    (``"node_chunk"``: done/total chunks over all targets) or a target's node suite (``"node_suite"``)."""

    kind: str
    done: int = 0
    total: int = 0
    result: CaseResult | None = None  # kind "cell"
    target: str | None = None  # kind "node_suite"
    counts: dict[str, Any] | None = None  # kind "node_suite": passed, total, cached, seconds, problems


Progress = Callable[[ProgressEvent], None]


@dataclass
class ConformanceReport:
    """The JSON document (versioned schema), the matrix it came from, and where each report went."""

    document: dict[str, Any]
    matrix: MatrixResult
    paths: dict[str, Path]  # kind -> path of every report written
    plot_error: str | None = None  # why the plot is missing, when it is
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.document["summary"]["passed"])

    @property
    def regressions(self) -> list[dict[str, Any]]:
        return list((self.document.get("baseline") or {}).get("regressions", []))

    def __bool__(self) -> bool:
        return self.passed


def chosen_targets(config: ConformanceConfig) -> list[str]:
    chosen = [str(resolve_target(t)) for t in config.targets] or [str(t) for t in default_targets()]
    if not chosen:
        raise UsageError("no target available", hint="`portarun backends` says why")
    return chosen


def chosen_cases(config: ConformanceConfig) -> list[Case]:
    if not config.models:
        if config.feeds is not None:
            raise UsageError("feeds are given but no model to feed", hint="name the model the feeds belong to")
        return builtin_cases()
    if config.feeds is not None and config.dims:
        raise UsageError("dims size random feeds, but the feeds are given",
                         hint="drop --dim: with your own data the shapes are your arrays' shapes")
    return [case_for(m, dict(config.dims), reference=config.reference, feeds=config.feeds) for m in config.models]


def run(config: ConformanceConfig, progress: Progress | None = None) -> ConformanceReport:
    """Run the matrix and/or the node suite, price the cells, compare with the baseline, write the reports."""
    started = time.perf_counter()
    assumptions = config.assumptions or default_assumptions()
    targets = chosen_targets(config)
    cases = chosen_cases(config)
    old = load_report(config.baseline) if config.baseline else None  # fail before the long run, not after
    _check_decoders(config.decode_cost)
    matrix = MatrixResult([])
    if config.suite in ("models", "all"):
        matrix = _run_cells(config, cases, targets, progress)
    if config.node_suite_mode != "off":
        matrix.node_suite = _run_node_suite(config, targets, progress)
    if not config.ray:  # on a fleet each cell was priced on its own node
        attach_costs(matrix, config.hardware, assumptions)
    document = build_report(matrix, hardware=config.hardware, assumptions=assumptions)
    if config.decode_cost:
        document["decode_cost"] = _decode_costs(config, targets, assumptions)
    if old is not None:
        regressions = find_regressions(document, old, threshold=config.threshold)
        document["baseline"] = {"path": str(config.baseline), "threshold": config.threshold,
                                "regressions": regressions}
        document["summary"]["passed"] = document["summary"]["passed"] and not regressions
    document["summary"]["total_wall_time"] = {"value": time.perf_counter() - started, "unit": "s"}
    paths, plot_error = write_reports(document, report_paths(config))
    return ConformanceReport(document, matrix, paths, plot_error, time.perf_counter() - started)


def _check_decoders(names: Sequence[str]) -> None:
    from portarun import models

    known = models.names(kind="decoder")
    unknown = [n for n in names if n.removeprefix("builtin:") not in known]
    if unknown:
        raise UsageError(f"--decode-cost {', '.join(unknown)}: not a built-in decoder",
                         hint=f"choose from {', '.join(known)}")


def _decode_costs(config: ConformanceConfig, targets: list[str], assumptions: CostAssumptions) -> list[dict[str, Any]]:
    """One decode-cost section per decoder named, over the chosen CPU targets (the price is per vCPU)."""
    from .decode_cost import DEFAULT_PRECISIONS, measure_decode_costs

    cpu = [t for t in targets if t.split(":")[1:2] == ["cpu"]]
    if not cpu:
        raise UsageError("decode cost is measured on CPU targets, and none is chosen",
                         hint="add -t onnxruntime:cpu (or openvino:cpu, xla:cpu)")
    # always the three weight precisions: the table's point is comparing them (-p narrows the matrix only)
    return [measure_decode_costs(name.removeprefix("builtin:"), cpu, DEFAULT_PRECISIONS, hardware=config.hardware,
                                 assumptions=assumptions, new_tokens=config.decode_new_tokens,
                                 repeats=max(1, min(config.runs, 3)))
            for name in config.decode_cost]


def _run_cells(config: ConformanceConfig, cases: list[Case], targets: list[str],
               progress: Progress | None) -> MatrixResult:
    def cell_done(result: CaseResult, done: int, total: int) -> None:
        if progress is not None:
            progress(ProgressEvent("cell", done, total, result=result))

    if config.ray:
        return _run_cells_on_ray(config, cases, targets, cell_done, config.assumptions or default_assumptions())
    return run_matrix(cases, targets, list(config.precisions) or None, runs=config.runs, warmup=config.warmup,
                      timeout_s=config.timeout_s, isolate=config.isolate, plugins=config.plugins,
                      localize_failures=config.localize, progress=cell_done)


def _run_cells_on_ray(config: ConformanceConfig, cases: list[Case], targets: list[str],
                      cell_done: Callable[[CaseResult, int, int], None], assumptions: CostAssumptions) -> MatrixResult:
    """The model cells as Ray tasks (``fleet``); the node suite, when asked for, still runs here."""
    from .fleet import connect, import_ray, run_matrix_on_ray

    owns = connect(config.ray)
    try:
        return run_matrix_on_ray(cases, targets, list(config.precisions) or None, runs=config.runs,
                                 warmup=config.warmup, timeout_s=config.timeout_s, plugins=config.plugins,
                                 localize_failures=config.localize, placement_timeout_s=config.placement_timeout_s,
                                 accelerator_types=dict(config.accelerator_types),
                                 pricing=(config.hardware, assumptions), progress=cell_done)
    finally:
        if owns:
            import_ray().shutdown()


def _run_node_suite(config: ConformanceConfig, targets: list[str], progress: Progress | None) -> dict[str, Any]:
    from .nodes import run_node_suites

    finished: list[str] = []

    def suite_done(target: str, counts: dict[str, Any]) -> None:
        finished.append(target)
        if progress is not None:
            progress(ProgressEvent("node_suite", len(finished), len(targets), target=target, counts=counts))

    def chunk_done(done: int, total: int) -> None:
        if progress is not None:
            progress(ProgressEvent("node_chunk", done, total))

    started = time.perf_counter()
    suite = run_node_suites(targets, isolate=config.isolate, plugins=config.plugins, progress=suite_done,
                            ops=list(config.node_ops) if config.node_ops else None, use_cache=config.use_cache,
                            mode=config.node_suite_mode, chunk_progress=chunk_done)
    suite["wall_time"] = {"value": time.perf_counter() - started, "unit": "s"}
    return suite


def report_paths(config: ConformanceConfig) -> dict[str, Path | None]:
    """Where each report goes (None: not written, i.e. ``json_path="-"`` for a caller that prints it)."""
    out = Path(config.out_dir)
    explicit = {"json": config.json_path, "junit": config.junit_path, "markdown": config.markdown_path,
                "plot": config.plot_path}
    return {kind: None if explicit[kind] == "-" else Path(explicit[kind] or out / name)
            for kind, name in REPORT_FILES.items()}


def write_reports(document: dict[str, Any], paths: Mapping[str, Path | None]) -> tuple[dict[str, Path], str | None]:
    """Write JSON, JUnit, Markdown and the plot; returns what was written and why the plot is missing."""
    writers = {"json": write_json, "junit": write_junit, "markdown": write_markdown}
    written: dict[str, Path] = {}
    for kind, writer in writers.items():
        if paths.get(kind) is not None:
            written[kind] = writer(document, paths[kind])
    plot_error = None
    if paths.get("plot") is not None:
        try:
            from .plot import plot_report

            written["plot"] = plot_report(document, paths["plot"])
        except Exception as exc:  # the plot is the least essential report: say why it is missing
            plot_error = str(exc)
    return written, plot_error


__all__ = ["ConformanceConfig", "ConformanceReport", "DEFAULT_OUT_DIR", "NODE_SUITE_MODES", "Progress", "ProgressEvent",
           "REPORT_FILES", "SUITES", "report_paths", "run", "write_reports"]
