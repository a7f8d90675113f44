"""The one module under ``portarun/`` that imports ``portarun_conformance`` (its public API).

The core library never depends on the conformance suite. Four CLI commands show what the suite
computes: ``conformance`` (the whole run), ``compare`` (cases, tolerances, divergence
localization), ``bench`` (hardware profiles for pricing, the sweep plot) and ``hardware`` (the
sourced profiles, this machine's measurement). They get it through this module, lazily, so
``portarun --help`` and the other commands never import the suite; the structure test
(tests/portarun/cli/test_cli_structure.py) fails if any other module in ``portarun/`` imports it.
"""

from __future__ import annotations

from types import ModuleType


def conformance() -> ModuleType:
    """``portarun_conformance``: run(), ConformanceConfig, case_for, localize, tolerance_for ..."""
    import portarun_conformance

    return portarun_conformance


def hardware() -> ModuleType:
    """``portarun_conformance.hardware``: profiles, profile_for, default_assumptions, measure_local ..."""
    from portarun_conformance import hardware as module

    return module


def fleet() -> ModuleType:
    """``portarun_conformance.fleet``: sweeps and cells on a Ray cluster (extra ``ray``)."""
    from portarun_conformance import fleet as module

    return module


def markdown() -> ModuleType:
    """``portarun_conformance.markdown``: HEADERS and matrix_rows, the table the CLI prints."""
    from portarun_conformance import markdown as module

    return module


def report() -> ModuleType:
    """``portarun_conformance.report``: the JSON report (finite, validate, load_report)."""
    from portarun_conformance import report as module

    return module


def plot() -> ModuleType:
    """``portarun_conformance.plot``: plot_report, plot_sweep (matplotlib)."""
    from portarun_conformance import plot as module

    return module


__all__ = ["conformance", "fleet", "hardware", "markdown", "plot", "report"]
