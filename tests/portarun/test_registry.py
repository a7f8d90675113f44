"""Registry tests. Test plugins are registered exactly like real ones: an installed
distribution (a .dist-info folder on sys.path) declaring the portarun.backends entry point."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import portarun
from portarun import BackendNotFoundError, BackendUnavailableError
from portarun.registry import default_registry, resolve_target

FAKE_BACKEND = '''
import numpy as np
from portarun import Backend, Executable, Provenance, Device, Precision

class FakeExecutable(Executable):
    def _run(self, feeds):
        return {self.outputs[0].name: feeds[self.inputs[0].name] * 2}

class FakeBackend(Backend):
    name = "fake"
    precisions = (Precision.FP32,)
    install_hint = "pip install fakeplugin"
    def sdk_version(self):
        return "9.9"
    def devices(self):
        return [Device("fake", "cpu", None, "test device")]
    def _compile(self, model, target, precision, options):
        prov = Provenance("fake", "9.9", str(target), "test device", precision.value)
        return FakeExecutable(backend=self, model=model, target=target, precision=precision, provenance=prov)

class NoSdkBackend(FakeBackend):
    name = "nosdk"
    install_hint = "pip install nosdk-runtime"
    def sdk_version(self):
        raise self.unavailable("cannot import nosdk_runtime")
    def devices(self):
        raise self.unavailable("cannot import nosdk_runtime")
'''


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """Install a throwaway distribution that registers fake, broken and nosdk backends."""
    (tmp_path / "fake_backend_mod.py").write_text(FAKE_BACKEND)
    (tmp_path / "broken_backend_mod.py").write_text("raise ImportError('libvendor.so.3: cannot open shared object')\n")
    info = tmp_path / "fakeplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        [portarun.backends]
        fake = fake_backend_mod:FakeBackend
        broken = broken_backend_mod:BrokenBackend
        nosdk = fake_backend_mod:NoSdkBackend
        notabackend = fake_backend_mod:np
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    default_registry.refresh()
    yield
    default_registry.refresh()
    for mod in ("fake_backend_mod", "broken_backend_mod"):
        sys.modules.pop(mod, None)


def test_plugin_discovered_and_usable(plugin_dist, builtin_models):
    assert "fake" in default_registry.names()
    exe = portarun.compile(builtin_models["mlp"].path or builtin_models["mlp"], "fake")
    x = np.ones((2, 64), np.float32)
    assert np.array_equal(exe.run({"x": x})["logits"], x * 2)  # fake: the plugin machinery, not numerics
    assert exe.target == portarun.Target("fake", "cpu")


def test_broken_plugin_is_remembered_not_fatal(plugin_dist):
    infos = {i.name: i for i in portarun.list_backends()}
    broken = infos["broken"]
    assert not broken.available
    assert "libvendor.so.3" in broken.reason and "broken_backend_mod:BrokenBackend" in broken.reason
    assert infos["onnxruntime"].available  # the others still load
    with pytest.raises(BackendUnavailableError, match="failed to load"):
        portarun.get_backend("broken")
    not_backend = infos["notabackend"]
    assert not not_backend.available and "not a portarun.Backend" in not_backend.reason


def test_missing_sdk_reports_reason_and_install_hint(plugin_dist):
    info = {i.name: i for i in portarun.list_backends()}["nosdk"]
    assert not info.available
    assert "cannot import nosdk_runtime" in info.reason and info.install_hint == "pip install nosdk-runtime"


def test_unknown_backend_did_you_mean():
    with pytest.raises(BackendNotFoundError, match="no backend named 'onnxruntim'") as info:
        portarun.get_backend("onnxruntim")
    assert "did you mean 'onnxruntime'" in str(info.value)
    with pytest.raises(BackendNotFoundError, match="registered backends"):
        portarun.get_backend("zzzzzz")


def test_env_order_restricts_and_orders(monkeypatch):
    monkeypatch.setenv("PORTARUN_BACKENDS", "reference,onnxruntime")
    assert default_registry.names() == ["reference", "onnxruntime"]
    with pytest.raises(BackendNotFoundError, match="PORTARUN_BACKENDS"):
        portarun.get_backend("openvino")
    assert [t.backend for t in portarun.available_targets()] == ["reference", "onnxruntime"]


def test_runtime_register_and_aliases():
    from portarun_backends.reference import ReferenceBackend

    class Renamed(ReferenceBackend):
        name = "ref2"

    default_registry.register("ref2", Renamed)
    try:
        assert portarun.get_backend("ref2").name == "ref2"
    finally:
        default_registry.unregister("ref2")
    assert resolve_target("rocm:gpu") == portarun.Target("onnxruntime", "rocm")


def test_import_portarun_loads_no_backend_or_sdk():
    code = ("import sys, portarun; portarun.list_backends; "
            "bad=[m for m in sys.modules if m.split('.')[0] in "
            "('onnxruntime','openvino','jax','tensorrt','torch','nncf','portarun_backends')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_known_target_checks_names_and_device_kinds_without_the_sdk():
    code = textwrap.dedent("""
        import sys, portarun
        backend = portarun.get_backend("openvino")
        print(backend.known_target("openvino"), backend.known_target("openvino:gpu:1"))
        try:
            backend.known_target("openvino:cpux")
        except portarun.InvalidTargetError as exc:
            print("refused:", exc)
        print([m for m in sys.modules if m.split(".")[0] in ("openvino", "nncf")])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "openvino:cpu openvino:gpu:1"  # the default device filled in, the index kept
    assert out[1].startswith("refused: openvino has no device kind 'cpux'") and "openvino:npu" in out[1]
    assert out[2] == "[]"  # a device kind is checked without importing the SDK
