"""Progress on stderr for anything that can take more than a couple of seconds, and quiet native SDKs.

A bar (tqdm) with counts and ETA on a terminal; one plain line per update when stderr is not a
terminal (CI logs, pipes), formatted by tqdm too. ``PORTARUN_PROGRESS=0`` turns it off. ::

    from portarun.progress import progress
    with progress("cells", total=68, unit="cell") as bar:
        for cell in cells:
            ...
            bar.update(note=f"{cell} PASS")

Native SDK logs (XLA's C++ warnings such as "constant folding is taking > 1s", ONNX Runtime's
"[E:onnxruntime:...]" lines, absl) are silenced by ``quiet_native_logs()`` through their own
environment variables, which spawned worker processes inherit; ``portarun -v`` keeps them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

ENV_PROGRESS = "PORTARUN_PROGRESS"  # "0": no progress output
STATUS_AFTER_S = 2.0  # off a terminal, a step says it is running once it has taken this long
ENV_NATIVE_LOGS = "PORTARUN_NATIVE_LOGS"  # "quiet" (the CLI's default) or "verbose"
# environment variables the SDKs read at import: value when quiet
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3", "TF_CPP_MAX_VLOG_LEVEL": "-1"}


def quiet_native_logs(verbose: bool = False) -> None:
    """Silence (or, with ``verbose``, keep) the vendor SDKs' native logs in this process and its workers.

    Call before the SDKs are imported; variables the user set explicitly are left alone."""
    os.environ[ENV_NATIVE_LOGS] = "verbose" if verbose else "quiet"
    if verbose:
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)


def native_logs_quiet() -> bool:
    """Whether a backend should turn its SDK's own logger down (ORT severity, OpenVINO LOG_LEVEL)."""
    return os.environ.get(ENV_NATIVE_LOGS, "") == "quiet"


def native_logs_verbose() -> bool:
    """Whether the user asked for the SDKs' own logs (`portarun -v`)."""
    return os.environ.get(ENV_NATIVE_LOGS, "") == "verbose"


class Progress:
    """One progress display: ``update(n, note=...)`` after each step, ``close()`` (or ``with``) at the end."""

    def __init__(self, description: str, total: int | None = None, unit: str = "it", *,
                 enabled: bool | None = None, stream: Any = None):
        self.description, self.total, self.unit = description, total, unit
        self.stream = stream or sys.stderr
        self.enabled = (os.environ.get(ENV_PROGRESS, "1") != "0") if enabled is None else enabled
        self.done = 0
        self.started = time.monotonic()
        self._bar = None
        if self.enabled and _isatty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit=unit, file=self.stream, dynamic_ncols=True,
                             leave=True, ascii=_ascii_only(self.stream))

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)
            return
        from tqdm import tqdm

        line = tqdm.format_meter(self.done, self.total, time.monotonic() - self.started, prefix=self.description,
                                 unit=self.unit, ncols=0)
        self.stream.write(f"{line}{'  ' + note if note else ''}\n")
        self.stream.flush()

    def write(self, text: str) -> None:
        """A line that stays above the bar (or just a line, off a terminal)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ascii_only(stream: Any) -> bool:
    """tqdm's block characters on a non-UTF-8 terminal (C locale) raise, and tqdm then goes silent."""
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    return not encoding.startswith("utf")


def _isatty(stream: Any) -> bool:
    """A terminal a bar can be drawn on: one that reports no width or no height (a pty nobody sized,
    e.g. under `script`, or given columns only) gets plain lines, since tqdm draws nothing there."""
    try:
        if not stream.isatty():
            return False
        size = os.get_terminal_size(stream.fileno())
        return size.columns > 0 and size.lines > 0  # tqdm draws nothing when either is unknown (0)
    except (AttributeError, ValueError, OSError):
        return False


def progress(description: str, total: int | None = None, unit: str = "it", **kwargs: Any) -> Progress:
    return Progress(description, total, unit, **kwargs)


class StageProgress:
    """The ``progress(stage, done, total)`` callback of a job made of stages (``portarun.quantize``'s):
    a bar per stage on a terminal, titled from ``titles`` (unknown stages by their own name), replaced
    when the next stage starts; off a terminal one line per stage, when it ends, with its time. ::

        with StageProgress({"rank": "rank layers", "search": "fallback steps"}) as bars:
            portarun.quantize(model, "int4-weight", progress=bars)
    """

    def __init__(self, titles: dict[str, str] | None = None, *, prefix: str = "", stream: Any = None,
                 enabled: bool | None = None):
        self.titles, self.prefix = dict(titles or {}), prefix
        self.stream = stream or sys.stderr
        self.enabled = (os.environ.get(ENV_PROGRESS, "1") != "0") if enabled is None else enabled
        self.terminal = _isatty(self.stream)
        self.stage: str | None = None
        self.bar: Progress | None = None
        self.started = time.monotonic()
        self.last = (0, 0)  # the current stage's latest (done, total)

    def title(self, stage: str) -> str:
        return f"{self.prefix}{self.titles.get(stage, stage)}"

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.stage, self.started = stage, time.monotonic()
            if self.terminal:
                self.bar = Progress(self.title(stage), total or None, "step", stream=self.stream)
        self.last = (done, total)
        if self.bar is not None:
            if total and self.bar._bar is not None and self.bar._bar.total != total:
                self.bar._bar.total = total  # a stage may learn its size as it goes
            self.bar.update(max(done - self.bar.done, 0))

    def close(self) -> None:
        """End the current stage: its bar stays on screen; off a terminal, its one line is written now."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.stage is not None and self.enabled and not self.terminal:
            done, total = self.last
            count = f"{done}/{total}" if total and done != total else f"{done}"
            self.stream.write(f"{self.title(self.stage)}: {count} in {time.monotonic() - self.started:.1f} s\n")
            self.stream.flush()
        self.stage = None

    def __enter__(self) -> "StageProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def status(description: str, *, stream: Any = None, enabled: bool | None = None):
    """For one long step with no count (a compile, an export): on a terminal, a line whose elapsed
    time ticks every half second; off one, a line once it has run STATUS_AFTER_S and one when it ends."""
    stream = stream or sys.stderr
    if not ((os.environ.get(ENV_PROGRESS, "1") != "0") if enabled is None else enabled):
        yield
        return
    import threading

    started = time.monotonic()
    if not _isatty(stream):  # a line only for a step that lasts: a quick one (or its one-line error) stays alone
        announced = threading.Event()

        def announce() -> None:
            announced.set()
            stream.write(f"{description} ...\n")
            stream.flush()

        timer = threading.Timer(STATUS_AFTER_S, announce)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
        if announced.is_set():
            stream.write(f"{description}: done in {time.monotonic() - started:.1f} s\n")
            stream.flush()
        return
    from tqdm import tqdm

    bar = tqdm(total=None, desc=description, file=stream, bar_format="{desc}: {elapsed}", leave=False,
               ascii=_ascii_only(stream))
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        bar.close()


__all__ = ["ENV_NATIVE_LOGS", "ENV_PROGRESS", "Progress", "StageProgress", "native_logs_quiet", "progress",
           "quiet_native_logs", "status"]
