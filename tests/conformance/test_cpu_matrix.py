"""The project's own CI runs the CPU conformance matrix on the built-in models, as a user would."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_builtin_matrix_passes_on_every_available_cpu_backend(tmp_path):
    done = subprocess.run([sys.executable, "-m", "portarun", "conformance", "--suite", "models", "--runs", "3",
                           "--warmup", "1", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for name in ("report.json", "report.xml", "summary.md", "plot.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    report = json.loads((tmp_path / "report.json").read_text())
    cells = report["results"]
    backends = {cell["target"].split(":")[0] for cell in cells}
    # the subprocess's own view of what is installed (this process may hold test backends)
    available = {b["name"] for b in report["environment"]["backends"] if b["available"]} - {"reference"}
    assert available <= backends, (available, backends)
    statuses = {cell["status"] for cell in cells}
    assert statuses <= {"pass", "skip"}, statuses
    assert sum(cell["status"] == "pass" for cell in cells) >= 3 * len(available)  # fp32 of every built-in at least
