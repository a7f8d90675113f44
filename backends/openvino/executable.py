"""A compiled OpenVINO model: runs by input name, saves IR (+ the exported blob where the device can)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portarun.backend import Executable

from .devices import capabilities, sdk

IR_XML = "model.xml"


def blob_name(device: str) -> str:
    return f"compiled.{device}.blob"


class OpenVinoExecutable(Executable):
    def __init__(self, compiled, ov_model, *, device: str, compile_config: dict[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.compiled = compiled
        self.ov_model = ov_model  # kept to write the IR: NNCF-compressed models cannot be rebuilt from ONNX alone
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

    def _save_payload(self, directory: Path) -> dict[str, Any]:
        ov = sdk()
        # compress_to_fp16 defaults to True and would silently halve the weights' precision.
        ov.save_model(self.ov_model, str(directory / IR_XML), compress_to_fp16=False)
        blob = None
        if "EXPORT_IMPORT" in capabilities(self.device):
            blob = blob_name(self.device)
            (directory / blob).write_bytes(self.compiled.export_model().getvalue())
        config = {k: v for k, v in self.compile_config.items() if k != "CACHE_DIR"}
        return {"ir": IR_XML, "blob": blob, "blob_device": self.device if blob else None,
                "openvino_version": ov.get_version(), "compile_config": config}

    def _close(self) -> None:
        self._request = None
        self.compiled = None
        self.ov_model = None
