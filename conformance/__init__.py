"""portarun's conformance suite: cross-backend parity and performance, used like any user uses portarun."""

from .cases import Case, builtin_cases
from .harness import CaseResult, MatrixResult, run_case, run_matrix
from .tolerances import tolerance_for

__all__ = ["Case", "CaseResult", "MatrixResult", "builtin_cases", "run_case", "run_matrix", "tolerance_for"]
