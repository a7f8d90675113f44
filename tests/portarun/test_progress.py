"""Progress on stderr: one plain line per update off a terminal (CI logs), nothing when turned off;
native SDK logs quiet unless asked for."""

from __future__ import annotations

import io
import os

from portarun.progress import ENV_NATIVE_LOGS, native_logs_quiet, progress, quiet_native_logs


def test_off_a_terminal_each_update_is_one_line_with_counts():
    stream = io.StringIO()  # not a TTY
    with progress("cells", total=3, unit="cell", stream=stream) as bar:
        for n in range(3):
            bar.update(note=f"case {n}: PASS")
        bar.write("node suite done")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()
    assert lines[0].startswith("cells:") and "1/3" in lines[0] and lines[0].endswith("case 0: PASS")
    assert "3/3" in lines[2] and lines[3] == "node suite done"


def test_disabled_progress_writes_nothing():
    stream = io.StringIO()
    with progress("cells", total=2, stream=stream, enabled=False) as bar:
        bar.update()
    assert stream.getvalue() == ""


def test_native_logs_are_quiet_by_default_and_kept_with_verbose(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv(ENV_NATIVE_LOGS, raising=False)
    quiet_native_logs()
    assert native_logs_quiet() and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    quiet_native_logs(verbose=True)
    assert not native_logs_quiet() and "TF_CPP_MIN_LOG_LEVEL" not in os.environ


def test_status_off_a_terminal_is_silent_for_quick_steps_and_reports_slow_ones(monkeypatch):
    import time

    import portarun.progress as module

    stream = io.StringIO()
    with module.status("compiling", stream=stream, enabled=True):
        pass
    assert stream.getvalue() == ""  # a quick step (or its one-line error) is not wrapped in status lines
    monkeypatch.setattr(module, "STATUS_AFTER_S", 0.01)
    with module.status("compiling", stream=stream, enabled=True):
        time.sleep(0.2)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "compiling ..." and lines[1].startswith("compiling: done in ")
