"""Triton python-backend model that runs a portarun artifact (copied into a repository as ``1/model.py``).

Triton imports this file inside its python-backend stub process, where ``triton_python_backend_utils``
exists; portarun and the target's backend extra must be installed in that Python. The version
folder holds ``artifact/`` (a portarun artifact, loaded with ``portarun.load_compiled``) or, when
the target could not be compiled where the repository was written, ``model.onnx`` and
``portarun.json`` (target, precision, options), compiled here at ``initialize``.
"""

import json
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import portarun

        folder = os.path.join(args["model_repository"], args["model_version"])
        artifact = os.path.join(folder, "artifact")
        if os.path.isdir(artifact):
            # rebuild: the artifact may come from another SDK version than the one in this container
            self.executable = portarun.load_compiled(artifact, rebuild=True)
        else:
            with open(os.path.join(folder, "portarun.json")) as handle:
                spec = json.load(handle)
            model = portarun.load(os.path.join(folder, "model.onnx"))
            self.executable = portarun.compile(model, spec["target"], spec["precision"], **spec.get("options", {}))
        self.input_names = [spec.name for spec in self.executable.inputs]
        self.output_names = [spec.name for spec in self.executable.outputs]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                         for name in self.input_names}
                outputs = self.executable.run(feeds)
                tensors = [pb_utils.Tensor(name, outputs[name]) for name in self.output_names]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # one failing request gets its error; the others still answer
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses

    def finalize(self):
        self.executable.close()
