"""portarun's conformance suite: cross-backend parity, divergence localization, performance and cost,
used like any user uses portarun (public API only)."""

from .cases import Case, builtin_cases, case_for
from .harness import CaseResult, MatrixResult, default_targets, precisions_for, run_matrix
from .localize import Localization, localize
from .tolerances import explain_tolerance, tolerance_for

__all__ = ["Case", "CaseResult", "Localization", "MatrixResult", "builtin_cases", "case_for", "default_targets",
           "explain_tolerance", "localize", "precisions_for", "run_matrix", "tolerance_for"]
