"""A compiled OpenVINO model: runs by input name, saves IR (+ the exported blob where the device can)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portarun.plugin import Executable

from .devices import capabilities, core, sdk
from . import fingerprint
from .requests import RequestPool

IR_XML = "model.xml"


def blob_name(device: str) -> str:
    return f"compiled.{device}.blob"


def input_ports(compiled: Any, specs: tuple) -> dict[str, int]:
    """Model input name -> the compiled model's input index that takes it.

    By tensor name first. OpenVINO drops inputs the graph does not use, and renames a Parameter that
    feeds an output directly (Dropout/Identity folded away) after that output, so its input name is
    gone: unmatched inputs then take the unmatched ports in order (OpenVINO keeps the ONNX input
    order). Feeding by name alone left such an input unfed and returned uninitialised memory.
    """
    ports = [set(port.get_names()) for port in compiled.inputs]
    found = {spec.name: i for spec in specs for i, names in enumerate(ports) if spec.name in names}
    unmatched_specs = [spec.name for spec in specs if spec.name not in found]
    unmatched_ports = [i for i in range(len(ports)) if i not in found.values()]
    if unmatched_specs and len(unmatched_specs) == len(unmatched_ports):
        found.update(zip(unmatched_specs, unmatched_ports))
    return found


class OpenVinoExecutable(Executable):
    def __init__(self, compiled, ov_model, *, device: str, compile_config: dict[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.compiled = compiled
        # Kept only when it cannot be read again from the ONNX model (NNCF-compressed, or read from an IR):
        # holding a float model's weights twice costs memory for nothing.
        self.ov_model = ov_model
        self.device = device
        self.compile_config = dict(compile_config)
        # one infer request per concurrent caller (see requests.py): an Executable is shared across threads
        self._requests = RequestPool(compiled)
        self.provenance.details["infer_requests"] = self._requests.size
        # OpenVINO drops inputs the graph does not use; those are still accepted and ignored.
        self.fed_inputs = input_ports(compiled, self.inputs)
        self._ports = {spec.name: compiled.output(spec.name) for spec in self.outputs}

    @property
    def dropped_inputs(self) -> list[str]:
        return [spec.name for spec in self.inputs if spec.name not in self.fed_inputs]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = {self.fed_inputs[name]: value for name, value in feeds.items() if name in self.fed_inputs}
        with self._requests.request() as request:
            # share_inputs=True lets the request read the caller's arrays in place (infer is synchronous
            # and the caller keeps them alive; copying decoder-small's 16 KV caches took its int4 decode
            # step from 4.48 to 4.92 ms in an in-model A/B);
            # share_outputs=False copies the outputs out of the request's buffers before it goes back
            # to the pool, where another thread's run would overwrite them
            results = request.infer(inputs, share_inputs=True, share_outputs=False)
            return {name: results[port] for name, port in self._ports.items()}

    def source_model(self):
        """The ``ov.Model`` this was compiled from (read again from the ONNX model when not kept)."""
        return self.ov_model if self.ov_model is not None else self.backend.read_model(self.model)

    def _save_payload(self, payload_dir: Path) -> dict[str, Any]:
        ov = sdk()
        # compress_to_fp16 defaults to True and would silently halve the weights' precision.
        ov.save_model(self.source_model(), str(payload_dir / IR_XML), compress_to_fp16=False)
        config = {k: v for k, v in self.compile_config.items() if k != "CACHE_DIR"}
        blob, skipped, fingerprint = None, None, None
        if "EXPORT_IMPORT" in capabilities(self.device):
            try:
                data, fingerprint = self._export(config)
            except Exception as exc:  # the IR still makes a complete artifact; say why there is no blob
                skipped = f"export_model failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}"
            else:
                blob = blob_name(self.device)
                (payload_dir / blob).write_bytes(data)
        else:
            skipped = f"{self.device} does not support EXPORT_IMPORT"
        return {"ir": IR_XML, "blob": blob, "blob_device": self.device if blob else None,
                "blob_device_name": self.provenance.device if blob else None, "blob_skipped": skipped,
                "blob_fingerprint": fingerprint, "openvino_version": ov.get_version(), "compile_config": config}

    def _export(self, config: dict[str, Any]) -> tuple[bytes, str | None]:
        """The compiled model as a blob that ``import_model`` accepts, checked by importing it once.

        OpenVINO 2026.4 writes an unreadable blob for a model that was itself loaded from the
        model cache or imported, so such a model is compiled afresh (without the cache) to export it.
        """
        ov_core = core()
        compiled = self.compiled
        if self.provenance.details.get("loaded_from_cache") or self.provenance.details.get("loaded_as"):
            compiled = ov_core.compile_model(self.source_model(), self.device, config)
        data = compiled.export_model().getvalue()
        imported = ov_core.import_model(data, self.device, config)
        return data, fingerprint.digest(imported, self.inputs, self.fed_inputs)

    def _close(self) -> None:
        self._requests.close()
        self.compiled = None
        self.ov_model = None
