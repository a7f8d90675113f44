"""The ``portarun`` command line: one command per module, each a thin layer over the public API.

Commands are imported lazily so ``portarun --help`` stays fast and a command
whose optional dependency is missing does not break the others.
"""

from __future__ import annotations

import importlib

import click

from .._version import __version__
from ._common import PortarunGroup

# command name -> "module:function" inside portarun.cli
COMMANDS: dict[str, str] = {
    "backends": "backends:backends",
    "inspect": "inspect_cmd:inspect",
    "compile": "compile_cmd:compile_",
    "run": "run_cmd:run",
    "conformance": "conformance:conformance",
    "export": "export_cmd:export",
    "generate": "generate_cmd:generate",
    "compare": "compare_cmd:compare",
    "bench": "bench_cmd:bench",
    "hardware": "hardware_cmd:hardware",
    "quantize": "quantize_cmd:quantize",
    "serve": "serve_cmd:serve",
    "export-triton": "export_triton_cmd:export_triton",
    "plan": "plan_cmd:plan",
}


class LazyGroup(PortarunGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(f"{__name__}.{module_name}")
        return getattr(module, attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="portarun")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """portarun: run one ONNX model on any vendor's stack, and prove the numbers match.

    \b
    Start here:
      portarun backends                        what can run on this machine
      portarun conformance                     built-in models on every available backend
      portarun inspect builtin:transformer     what is inside a model
      portarun compile model.onnx -t onnxruntime:cpu -o build/model.ort
      portarun run build/model.ort --random
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


__all__ = ["main", "COMMANDS"]
