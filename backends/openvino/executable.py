"""A compiled OpenVINO model: runs by input name, saves IR (+ the exported blob where the device can)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portarun.plugin import Executable

from .devices import capabilities, core, sdk

IR_XML = "model.xml"


def blob_name(device: str) -> str:
    return f"compiled.{device}.blob"


class OpenVinoExecutable(Executable):
    def __init__(self, compiled, ov_model, *, device: str, compile_config: dict[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.compiled = compiled
        # Kept only when it cannot be read again from the ONNX model (NNCF-compressed, or read from an IR):
        # holding a float model's weights twice costs memory for nothing.
        self.ov_model = ov_model
        self.device = device
        self.compile_config = dict(compile_config)
        self._request = compiled.create_infer_request()
        # OpenVINO drops inputs the graph does not use; those are still accepted and ignored.
        self.fed_inputs = {name for port in compiled.inputs for name in port.get_names()}
        self._ports = {spec.name: compiled.output(spec.name) for spec in self.outputs}

    @property
    def dropped_inputs(self) -> list[str]:
        return [spec.name for spec in self.inputs if spec.name not in self.fed_inputs]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = {name: value for name, value in feeds.items() if name in self.fed_inputs}
        results = self._request.infer(inputs)  # share_outputs=False: arrays are ours, not the request's buffers
        return {name: results[port] for name, port in self._ports.items()}

    def source_model(self):
        """The ``ov.Model`` this was compiled from (read again from the ONNX model when not kept)."""
        return self.ov_model if self.ov_model is not None else self.backend.read_model(self.model)

    def _save_payload(self, payload_dir: Path) -> dict[str, Any]:
        ov = sdk()
        # compress_to_fp16 defaults to True and would silently halve the weights' precision.
        ov.save_model(self.source_model(), str(payload_dir / IR_XML), compress_to_fp16=False)
        config = {k: v for k, v in self.compile_config.items() if k != "CACHE_DIR"}
        blob, skipped = None, None
        if "EXPORT_IMPORT" in capabilities(self.device):
            try:
                data = self._export(config)
            except Exception as exc:  # the IR still makes a complete artifact; say why there is no blob
                skipped = f"export_model failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}"
            else:
                blob = blob_name(self.device)
                (payload_dir / blob).write_bytes(data)
        else:
            skipped = f"{self.device} does not support EXPORT_IMPORT"
        return {"ir": IR_XML, "blob": blob, "blob_device": self.device if blob else None,
                "blob_device_name": self.provenance.device if blob else None, "blob_skipped": skipped,
                "openvino_version": ov.get_version(), "compile_config": config}

    def _export(self, config: dict[str, Any]) -> bytes:
        """The compiled model as a blob that ``import_model`` accepts, checked by importing it once.

        OpenVINO 2026.4 writes an unreadable blob for a model that was itself loaded from the
        model cache or imported, so such a model is compiled afresh (without the cache) to export it.
        """
        ov_core = core()
        compiled = self.compiled
        if self.provenance.details.get("loaded_from_cache") or self.provenance.details.get("loaded_as"):
            compiled = ov_core.compile_model(self.source_model(), self.device, config)
        data = compiled.export_model().getvalue()
        ov_core.import_model(data, self.device, config)
        return data

    def _close(self) -> None:
        self._request = None
        self.compiled = None
        self.ov_model = None
