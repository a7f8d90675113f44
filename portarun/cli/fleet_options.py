"""The options that send a command's cells to a Ray fleet (``conformance --ray``), defined once."""

from __future__ import annotations

from typing import Any, Callable

import click

from ._common import parse_key_values


def fleet_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--ray ADDRESS|auto|local``, ``--placement-timeout S``, ``--accelerator-type TARGET=TYPE``."""
    options = [
        click.option("--ray", "ray", metavar="ADDRESS|auto|local",
                     help="Run each cell as a Ray task on a node that offers its target: a cluster address, "
                          "'auto' (the cluster this machine is in) or 'local' (start one for the run). "
                          "Needs portarun[ray] on every node."),
        click.option("--placement-timeout", "placement_timeout_s", default=30.0, show_default=True,
                     type=click.FloatRange(min=0), help="With --ray: seconds to wait for a node that offers a "
                                                        "target before reporting that none does."),
        click.option("--accelerator-type", "accelerator_types", multiple=True, metavar="TARGET=TYPE",
                     help="With --ray: the Ray accelerator type a GPU target needs (e.g. onnxruntime:cuda=H100)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def parse_accelerator_types(items: tuple[str, ...]) -> dict[str, str]:
    return parse_key_values(items, "--accelerator-type")
