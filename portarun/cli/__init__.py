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


# command name -> its one-line help, so `portarun --help` lists the commands without importing them
# (tests/portarun/cli/test_fast_help.py checks each against the command's own docstring)
SHORT_HELP: dict[str, str] = {
    "backends": 'List every registered backend: available or not, devices, precisions, and why.',
    "bench": 'Measure MODEL_OR_ARTIFACT on TARGET: warm-up, then median/p99 latency, items/s, tokens/s, peak memory, energy (RAPL/NVML when readable) and $/1M tokens for each batch size.',
    "compare": "Compare MODEL's outputs on two targets: max abs/rel error, NMSE, cosine, % within tolerance, top-1 agreement.",
    "compile": 'Compile MODEL (an .onnx file or builtin:NAME) for TARGET and write an artifact.',
    "conformance": 'Prove parity and measure latency and cost of MODELS on every target and precision.',
    "export": 'Export a PyTorch model to ONNX and check it against PyTorch on onnxruntime:cpu.',
    "export-triton": 'Write REPO/NAME/config.pbtxt and REPO/NAME/1/... so Triton serves MODEL_OR_ARTIFACT.',
    "generate": 'Generate with MODEL (a KV-cache decoder file or a built-in): text after --prompt with --tokenizer, or token ids after a random prompt; greedy unless --temperature; TTFT, TPOT, tokens/s.',
    "hardware": "List hardware profiles and measure this machine's bandwidth and matmul FLOP/s.",
    "inspect": 'Show what is inside MODEL (an .onnx file or builtin:NAME).',
    "plan": 'Find the cheapest deployment of MODEL that meets --floor and the SLO, from measurements.',
    "quantize": 'Quantize MODEL (an .onnx file or builtin:NAME) to standard ONNX QDQ and write it to OUTPUT.',
    "run": "Run MODEL_OR_ARTIFACT once and print each output's shape, dtype and summary.",
    "serve": 'Serve MODEL_OR_ARTIFACT over HTTP with the Open Inference Protocol until Ctrl-C or SIGTERM.',
}


def _shorten(text: str, limit: int) -> str:
    """``text`` cut at a word to fit ``limit`` characters, with '...' (as click shortens help)."""
    if len(text) <= limit:
        return text
    return text[:max(limit - 3, 1)].rsplit(" ", 1)[0].rstrip(" ,;:") + "..."


class LazyGroup(PortarunGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their one-line help from SHORT_HELP: importing them would cost seconds."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        with formatter.section("Commands"):
            formatter.write_dl([(name, _shorten(SHORT_HELP.get(name, ""), limit)) for name in names])

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
@click.option("-v", "--verbose", is_flag=True, help="Keep the vendor SDKs' native logs (XLA, ONNX Runtime, absl); "
                                                    "silenced by default.")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """portarun: run one ONNX model on any vendor's stack, and prove the numbers match.

    \b
    Start here:
      portarun backends                        what can run on this machine
      portarun conformance                     built-in models on every available backend
      portarun inspect builtin:transformer     what is inside a model
      portarun compile model.onnx -t onnxruntime:cpu -o build/model.ort
      portarun run build/model.ort --random
    """
    from ..progress import quiet_native_logs

    quiet_native_logs(verbose)  # before any command imports an SDK; spawned workers inherit it
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


__all__ = ["main", "COMMANDS", "SHORT_HELP"]
