"""OpenVINO's device names (``CPU``, ``GPU.1``, ``NPU``, ``AUTO``) and portarun's targets.

Kept apart from the compile code so the mapping reads in one place:
``openvino:gpu:1`` is OpenVINO's ``GPU.1``, ``openvino:auto`` its ``AUTO`` plugin.
"""

from __future__ import annotations

from portarun.plugin import Device, Target, cpu_features, import_sdk

INSTALL_HINT = "pip install 'portarun[openvino]'"

# portarun device kind -> OpenVINO device name
OV_DEVICE_BY_KIND = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU", "auto": "AUTO"}

DEVICE_HINTS = {
    "cpu": INSTALL_HINT,
    "gpu": "an Intel GPU with its compute runtime (intel-opencl-icd / Level Zero) is needed; "
           "`python -c 'import openvino; print(openvino.Core().available_devices)'` must list GPU",
    "npu": "an Intel NPU (Core Ultra) with the NPU driver is needed; openvino.Core().available_devices must list NPU",
    "auto": INSTALL_HINT,
}


def sdk():
    """The openvino module, or BackendUnavailableError saying how to install it."""
    return import_sdk("openvino", backend="openvino", hint=INSTALL_HINT)


def core():
    """One shared ``openvino.Core`` per process: creating it loads every plugin."""
    global _CORE
    if _CORE is None:
        _CORE = sdk().Core()
    return _CORE


_CORE = None


def parse_ov_device(name: str) -> tuple[str, int | None] | None:
    """``GPU.1`` -> ("gpu", 1); ``CPU`` -> ("cpu", None); a device portarun has no kind for -> None."""
    base, _, index = name.partition(".")
    kind = next((k for k, v in OV_DEVICE_BY_KIND.items() if v == base), None)
    if kind is None:
        return None
    return kind, int(index) if index.isdigit() else None


def list_devices(backend_name: str) -> list[Device]:
    """Devices OpenVINO reports here, plus ``auto`` (a virtual device over them)."""
    ov_core = core()
    devices = []
    for name in ov_core.available_devices:
        parsed = parse_ov_device(name)
        if parsed is None:
            continue
        try:
            description = str(ov_core.get_property(name, "FULL_DEVICE_NAME"))
        except Exception:  # a plugin that cannot answer still lists the device
            description = name
        devices.append(Device(backend_name, parsed[0], parsed[1], description=description))
    if devices:
        devices.append(Device(backend_name, "auto", None, description="OpenVINO AUTO plugin over "
                              + ", ".join(ov_core.available_devices)))
    return devices


def ov_device(target: Target) -> str:
    """The OpenVINO device string for a resolved target."""
    name = OV_DEVICE_BY_KIND[target.device or "cpu"]
    return name if target.index is None else f"{name}.{target.index}"


def capabilities(device: str) -> set[str]:
    """OPTIMIZATION_CAPABILITIES of a real device (BF16, FP16, INT8, EXPORT_IMPORT, ...); empty for AUTO.

    For the CPU, BF16/FP16 stay only where the CPU's ISA (capped by ONEDNN_MAX_CPU_ISA) has them:
    OpenVINO reads CPUID for this list while its oneDNN kernels honour the cap, so under
    ``ONEDNN_MAX_CPU_ISA=AVX2`` it lists BF16 and then fails to compile bf16 ("Supported primitive
    descriptors list is empty")."""
    if device.startswith("AUTO"):
        return set()
    try:
        caps = {str(c) for c in core().get_property(device, "OPTIMIZATION_CAPABILITIES")}
    except Exception:
        return set()
    if device.split(".")[0] == "CPU":
        features = cpu_features()
        caps -= {name for name, has in (("BF16", features.bf16), ("FP16", features.fp16)) if not has}
    return caps
