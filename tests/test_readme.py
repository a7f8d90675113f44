"""The README runs as written: every ```bash block after the first (command 1 installs and runs the
main job, command 2 is this test suite) is run, in order, in one fresh directory, the way a user
pastes them into a clone after command 1.

Two things differ from a user's shell, both on purpose: `pip install ...` lines are not run (this
environment is the one command 2 installed, extras included: installing again would need the
network), and `PORTARUN_CACHE_DIR` points at a fresh folder. The commands themselves are the README's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def bash_blocks(text: str) -> list[str]:
    return [m.group(1) for m in BLOCK.finditer(text)]


def runnable(block: str) -> str:
    """The block without its `pip install` lines (see the module docstring)."""
    return "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("pip install"))


def test_readme_has_the_two_commands_first():
    first = bash_blocks(README.read_text())[0]
    assert "portarun conformance" in first and "python -m pytest -q" in first


@pytest.mark.slow
def test_readme_bash_blocks_run_as_written(tmp_path):
    blocks = bash_blocks(README.read_text())[1:]
    assert blocks, "the README lost its command blocks"
    env = {**os.environ, "PORTARUN_CACHE_DIR": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    work = tmp_path / "clone"
    work.mkdir()
    assert shutil.which("portarun", path=env["PATH"]), "the portarun console script is not installed"
    for n, block in enumerate(blocks, 1):
        script = "set -euo pipefail\n" + runnable(block)
        done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (f"README bash block {n} failed (exit {done.returncode}):\n{block}\n"
                                      f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
