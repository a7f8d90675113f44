"""A pool of OpenVINO infer requests, so one compiled model serves many threads.

An ``InferRequest`` is single-caller state: two threads on one request get "Infer Request
is busy" or each other's results. OpenVINO's documented way is one request per
concurrent caller; the device says how many it can overlap usefully
(``OPTIMAL_NUMBER_OF_INFER_REQUESTS``). The pool creates requests lazily up to that
number; a caller beyond it waits for a free one (it would only queue on the device anyway).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


def optimal_requests(compiled: Any) -> int:
    """The compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS (1 when it cannot say)."""
    try:
        return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    except Exception:  # a plugin without the property still serves one caller at a time
        return 1


class RequestPool:
    def __init__(self, compiled: Any, size: int | None = None):
        self._compiled = compiled
        self.size = size if size is not None else optimal_requests(compiled)
        self._free: list[Any] = [compiled.create_infer_request()]  # one up front: compile errors show early
        self._created = 1
        self._available = threading.Condition()

    @contextlib.contextmanager
    def request(self) -> Iterator[Any]:
        """A request no other thread holds until the block ends."""
        with self._available:
            while not self._free and self._created >= self.size:
                self._available.wait()
            if self._free:
                request = self._free.pop()
            else:
                self._created += 1
                request = None
        if request is None:
            try:
                request = self._compiled.create_infer_request()
            except BaseException:
                with self._available:
                    self._created -= 1
                    self._available.notify()
                raise
        try:
            yield request
        finally:
            with self._available:
                self._free.append(request)
                self._available.notify()

    def close(self) -> None:
        with self._available:
            self._free.clear()
            self._compiled = None


__all__ = ["RequestPool", "optimal_requests"]
