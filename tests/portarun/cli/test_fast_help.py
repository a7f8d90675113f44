"""`portarun --help` and every command's --help load no heavy module (onnx, numpy, the conformance
suite): they cost over a second on a 2-core machine. Asserted on sys.modules, never on time."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from portarun.cli import COMMANDS, SHORT_HELP, main

HEAVY = ("onnx", "numpy", "portarun_conformance", "onnxruntime", "openvino", "jax", "torch")
PROBE = """
import json, sys
from portarun.cli import main
try:
    main(sys.argv[1:], prog_name="portarun")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("command", ["", *sorted(COMMANDS)])
def test_help_imports_no_heavy_module(command):
    args = [command, "--help"] if command else ["--help"]
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True,
                          timeout=120)
    assert "Usage:" in done.stdout, done.stderr
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert loaded == [], f"`portarun {' '.join(args)}` imported {loaded}"


def test_listed_help_is_each_commands_own():
    """The group lists SHORT_HELP without importing the commands: it must say what each one says."""
    ctx = click.Context(main)
    assert set(SHORT_HELP) == set(COMMANDS)
    for name in COMMANDS:
        assert main.get_command(ctx, name).get_short_help_str(limit=1000) == SHORT_HELP[name], name
