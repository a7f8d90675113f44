"""Fleet sweeps: the conformance matrix on a Ray cluster, one merged report (extra ``portarun[ray]``).

Ray is imported on first use; ``placement`` documents how a target maps to Ray resources.
"""

from .bench import sweep_on_ray
from .driver import connect, import_ray, run_matrix_on_ray
from .nodes import check_versions, describe_here, probe_nodes
from .placement import RESOURCE_PREFIX, Placement, placement_for

__all__ = ["Placement", "RESOURCE_PREFIX", "check_versions", "connect", "describe_here", "import_ray",
           "placement_for", "probe_nodes", "run_matrix_on_ray", "sweep_on_ray"]
