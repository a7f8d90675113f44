"""portarun's conformance suite: cross-backend parity, divergence localization, performance and cost,
used like any user uses portarun (public API only).

Public API (stable for the CLI, a plan command, a Ray driver): ``run(ConformanceConfig, progress)
-> ConformanceReport`` for a whole run, ``compare_targets(...) -> CrossCheck`` for one model on two
targets, and the other names exported here. Inside ``portarun/`` only ``portarun/cli/suite.py``
imports this package (the ``conformance``, ``compare``, ``bench`` and ``hardware`` commands get it
from there); the core library never does.
"""

from .cases import Case, builtin_cases, case_for
from .crosscheck import CrossCheck, compare_targets
from .harness import CaseResult, MatrixResult, default_targets, precisions_for, run_matrix
from .localize import Localization, localize
from .runner import ConformanceConfig, ConformanceReport, ProgressEvent, run
from .tolerances import explain_tolerance, tolerance_for

__all__ = ["Case", "CaseResult", "ConformanceConfig", "ConformanceReport", "CrossCheck", "Localization",
           "MatrixResult", "ProgressEvent", "builtin_cases", "case_for", "compare_targets", "default_targets",
           "explain_tolerance", "localize", "precisions_for", "run", "run_matrix", "tolerance_for"]
