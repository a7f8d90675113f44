"""The Ray Serve deployment: one compiled executable per replica, answering the Open Inference Protocol.

Imported only by ``portarun.serve`` (it imports Ray). Requests are decoded and checked against the
signature in the request handler (bad ones never reach a batch: HTTP 400), then queued into a
``@serve.batch`` method that stacks compatible requests along the batch axis and runs them in a
worker thread, so health and metadata requests are answered while a batch runs. One batch runs at a
time per replica (``max_concurrent_batches=1``) and a lock guards the executable, so executables
that are not thread-safe are safe here too.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import zlib
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from .._version import __version__
from ..backend import check_feeds
from ..errors import PortarunError, UsageError
from . import oip
from .batching import batch_dim, run_batched
from .spec import ServeSpec


def _json(status: int, payload: Any) -> Response:
    return Response(json.dumps(payload).encode(), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return Response(oip.error_body(message), status_code=status, media_type="application/json")


def _decompress(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


class OipModelServer:
    """A replica: builds the executable from the spec and serves it under ``/v2``."""

    def __init__(self, spec: ServeSpec):
        self.spec = spec
        self.executable = spec.build()
        self.lock = threading.Lock()
        self.stackable = batch_dim(self.executable.inputs, self.executable.outputs) is not None
        self._infer_batch.set_max_batch_size(spec.max_batch_size)
        self._infer_batch.set_batch_wait_timeout_s(spec.batch_wait_ms / 1000.0)
        prov = self.executable.provenance
        self.metadata = oip.model_metadata(spec.name, self.executable.inputs, self.executable.outputs,
                                           platform=f"portarun_{prov.backend}")
        self.metadata["parameters"] = {"target": prov.target, "precision": str(self.executable.precision),
                                       "sdk_version": prov.sdk_version, "device": prov.device}

    def _run_locked(self, feeds: dict) -> dict:
        with self.lock:
            return self.executable.run(feeds, check=False)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005, max_concurrent_batches=1)
    async def _infer_batch(self, requests: list[dict]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: run_batched(self._run_locked, requests,
                                                                     stackable=self.stackable))

    async def __call__(self, request: Request) -> Response:
        route = oip.parse_path(request.url.path)
        if route is None:
            return _error(404, f"no Open Inference Protocol endpoint at {request.url.path}")
        if request.method != route.method:
            return _error(405, f"{request.url.path} takes {route.method}, not {request.method}")
        if route.kind == "server":
            return _json(200, {"name": "portarun", "version": __version__, "extensions": ["binary_tensor_data"]})
        if route.kind in ("live", "ready"):
            return _json(200, {route.kind: True})
        if route.model != self.spec.name or route.version not in (None, "1"):
            asked = route.model + (f" version {route.version}" if route.version else "")
            return _error(404, f"model '{asked}' is not served here (served: '{self.spec.name}' version 1)")
        if route.kind == "metadata":
            return _json(200, self.metadata)
        if route.kind == "model_ready":
            return _json(200, {"name": self.spec.name, "ready": True})
        return await self._infer(request)

    async def _infer(self, request: Request) -> Response:
        try:
            body = _decompress(await request.body(), request.headers.get("content-encoding"))
            length = request.headers.get(oip.HEADER_LENGTH)
            decoded = oip.decode_infer_request(body, int(length) if length is not None else None)
            oip.check_requested_outputs(decoded, self.executable.outputs)
            feeds = check_feeds(self.executable.inputs, decoded.feeds)  # the same checks as Executable.run
        except (PortarunError, ValueError, OSError) as exc:  # OSError/ValueError: a bad gzip body or header
            return _error(400, str(exc))
        result, batch_size = await self._infer_batch(feeds)
        if isinstance(result, BaseException):
            status = 400 if isinstance(result, UsageError) else 500
            return _error(status, str(result))
        body, headers = oip.encode_infer_response(self.spec.name, decoded, result,
                                                  parameters={"portarun_batch_size": batch_size})
        return Response(body, status_code=200, headers=headers)

    def __del__(self) -> None:
        executable = getattr(self, "executable", None)
        if executable is not None:
            executable.close()


def build_application(spec: ServeSpec, *, replicas: int = 1, autoscale: tuple[int, int] | None = None,
                      num_cpus: float = 1.0, num_gpus: float = 0.0) -> Any:
    """The Ray Serve application for ``spec``: fixed ``replicas`` or ``autoscale=(min, max)``."""
    scaling: dict[str, Any]
    if autoscale is not None:
        low, high = autoscale
        scaling = {"autoscaling_config": {"min_replicas": low, "max_replicas": high,
                                          "target_ongoing_requests": max(2, spec.max_batch_size)}}
    else:
        scaling = {"num_replicas": replicas}
    deployment = serve.deployment(
        OipModelServer, name=f"portarun-{spec.name}",
        # enough requests in flight per replica to fill a batch twice over
        max_ongoing_requests=max(32, 2 * spec.max_batch_size),
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
        max_constructor_retry_count=1, **scaling)
    return deployment.bind(spec)
