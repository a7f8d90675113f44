"""`portarun serve` as a user runs it: a real process, a real local Ray, stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from click.testing import CliRunner

from portarun.cli import main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_line(process: subprocess.Popen, text: str, deadline_s: float) -> list[str]:
    """Lines printed until one contains ``text`` (the command prints it once it is serving)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in process.stdout], daemon=True)
    reader.start()
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and not any(text in line for line in lines):
        if process.poll() is not None:
            raise AssertionError("portarun serve exited early:\n" + "".join(lines))
        time.sleep(0.2)
    if not any(text in line for line in lines):
        raise AssertionError("portarun serve did not start serving:\n" + "".join(lines))
    return lines


@pytest.mark.slow
def test_serve_command_answers_then_stops_cleanly_on_sigterm():
    pytest.importorskip("ray.serve")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    process = subprocess.Popen([sys.executable, "-m", "portarun", "serve", "builtin:mlp", "-t", "onnxruntime:cpu",
                                "--port", str(port), "--max-batch-size", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = _wait_for_line(process, "serving 'mlp' at", deadline_s=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/mlp", timeout=10) as response:
            meta = json.loads(response.read())
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    time.sleep(0.5)  # let the reader thread take the last lines
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "serving 'mlp' at" in output and "stopped" in output
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5)


def test_serve_command_rejects_replicas_with_autoscale():
    result = CliRunner().invoke(main, ["serve", "builtin:mlp", "-t", "onnxruntime:cpu", "--replicas", "2",
                                       "--autoscale", "1,3"])
    assert result.exit_code == 2 and "not both" in result.output
    result = CliRunner().invoke(main, ["serve", "builtin:mlp", "-t", "onnxruntime:cpu", "--autoscale", "x"])
    assert result.exit_code == 2 and "MIN,MAX" in result.output


def test_serve_without_ray_names_the_extra(monkeypatch):
    # a plumbing test: hide Ray from the import system to stand in for a machine without the extra
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(main, ["serve", "builtin:mlp", "-t", "onnxruntime:cpu"])
    assert result.exit_code == 2
    assert "pip install 'portarun[serve]'" in result.output
