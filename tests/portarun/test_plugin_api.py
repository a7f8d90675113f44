"""The plugin surface and the base class's hooks: options reach supports, prepared work reaches compile once,
UnsupportedError carries structured fields, the layout stays in portarun.artifact."""

import numpy as np
import onnx
import pytest

import portarun
from portarun import plugin
from portarun.plugin import Backend, Device, Executable, Precision, Provenance, Support
from portarun.registry import default_registry


def test_first_line_of_errors_and_messages():
    assert plugin.first_line(RuntimeError("  first\nsecond")) == "first"
    assert plugin.first_line(ValueError()) == "ValueError"  # no text: its type
    assert plugin.first_line("") == "" and plugin.first_line(None) == ""
    assert plugin.first_line(RuntimeError("x" * 50), 10) == "x" * 10
    wrapped = RuntimeError("Failed to export\n## Exception summary\n\nTypeError: the real cause\nmore")
    assert plugin.first_line(wrapped) == "TypeError: the real cause"


def test_default_domain_has_one_spelling():
    assert plugin.onnx_domain("") == plugin.onnx_domain("ai.onnx") == ""
    assert plugin.onnx_domain("com.microsoft") == "com.microsoft"
    opsets = [onnx.helper.make_opsetid("ai.onnx", 18), onnx.helper.make_opsetid("com.microsoft", 1)]
    assert plugin.opset_versions(opsets) == {"": 18, "com.microsoft": 1}
    model = portarun.Model.from_proto(onnx.helper.make_model(
        onnx.helper.make_graph([], "g", [], []), opset_imports=opsets), check=False)
    assert model.opset == 18 and model.opsets == {"ai.onnx": 18, "com.microsoft": 1}  # shown as before


def test_backend_cache_dir_is_under_the_cache_root_unless_overridden(tmp_path):
    assert plugin.backend_cache_dir("somebackend") == plugin.cache_dir() / "somebackend"
    assert plugin.backend_cache_dir("somebackend").is_dir()
    assert plugin.backend_cache_dir("somebackend", tmp_path / "mine") == tmp_path / "mine"
    assert (tmp_path / "mine").is_dir()


class _Echo(Executable):
    def _run(self, feeds):
        return {spec.name: np.zeros((1, 10), np.float32) for spec in self.outputs}


class _Recording(Backend):
    """A stand-in backend (plumbing only: it computes nothing) that records what its hooks receive."""

    name = "recording"
    precisions = (Precision.FP32,)
    options = {"refuse": "make _supports say no", "mode": "checked by _check_options"}

    def __init__(self):
        self.supports_options = []
        self.prepared = []

    def sdk_version(self):
        return "0"

    def devices(self):
        return [Device(self.name, "cpu")]

    def _check_options(self, options):
        if options.get("mode") not in (None, "ok"):
            raise plugin.UsageError("recording: mode must be 'ok'")

    def _supports(self, model, target, precision, options):
        self.supports_options.append(dict(options))
        if options.get("refuse"):
            return Support.no("asked to refuse", missing_ops=("Fancy",), hint="do not pass refuse")
        return Support.yes(prepared=("graph of", model.name))

    def _compile(self, model, target, precision, options, prepared=None):
        self.prepared.append(prepared)
        provenance = Provenance(self.name, "0", str(target), "none", precision.value)
        return _Echo(backend=self, model=model, target=target, precision=precision, provenance=provenance,
                     options=options)


@pytest.fixture
def recording():
    default_registry.register("recording", _Recording)
    try:
        yield portarun.get_backend("recording")
    finally:
        default_registry.unregister("recording")


def test_supports_sees_the_options_and_compile_gets_what_it_prepared(recording):
    model = portarun.models.build("mlp")
    assert not recording.supports(model, "recording", "fp32", {"refuse": True})
    portarun.compile(model, "recording", mode="ok")
    assert recording.supports_options[-1] == {"mode": "ok"}
    assert recording.prepared == [("graph of", "mlp")]  # prepared once, handed on within the same compile


def test_unsupported_error_carries_reason_and_missing_ops(recording):
    with pytest.raises(plugin.UnsupportedOpsError) as info:
        portarun.compile(portarun.models.build("mlp"), "recording", refuse=True)
    error = info.value
    assert isinstance(error, plugin.UnsupportedError) and isinstance(error, plugin.CompileError)
    assert error.reason == "asked to refuse" and error.missing_ops == ("Fancy",)
    assert error.hint == "do not pass refuse" and "recording cannot compile 'mlp'" in error.message


def test_option_values_are_checked_before_anything_else(recording):
    with pytest.raises(plugin.UsageError, match="mode must be 'ok'"):
        portarun.compile("builtin:mlp", "recording", "int8-weight", mode="bad")  # before any quantizing
    assert recording.supports_options == []


def test_the_quantizer_evaluates_on_a_declared_exact_evaluator():
    from portarun.quantize.evaluator import resolve_evaluator

    pytest.importorskip("onnxruntime")
    target, options = resolve_evaluator("auto")
    backend = portarun.get_backend(portarun.Target.parse(target).backend)
    assert backend.exact_evaluation_options is not None and options == backend.exact_evaluation_options
    assert resolve_evaluator("reference") == ("reference", {})


def test_only_the_artifact_module_names_the_layout():
    import re
    from pathlib import Path

    root = Path(portarun.__file__).parent
    backends = Path(__import__("portarun_backends").__file__).parent
    # a path built from the artifact's names (export's own temporary file is no artifact)
    layout = re.compile(r'"manifest\.json"|/ "payload"|(?<!Path\(tmp\)) / "model\.onnx"')
    offenders = [str(path) for path in list(root.rglob("*.py")) + list(backends.rglob("*.py"))
                 if path != root / "artifact.py" and layout.search(path.read_text())]
    assert offenders == []
