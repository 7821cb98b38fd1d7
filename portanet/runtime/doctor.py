"""What this machine offers portanet: onnxruntime packages, providers, devices, CPUs.

Runtime side: imports onnxruntime only; the export side is looked up, never imported.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import shutil
from typing import Any

import onnxruntime as ort

from portanet.runtime.providers import usable_cpus

#: Distributions that all install the same ``onnxruntime`` module; exactly one may be present.
RUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-qnn",
    "ort-nightly",
    "ort-nightly-gpu",
)
EXPORT_MODULES = ("tensorflow", "tf_keras", "keras", "tf2onnx", "onnx", "h5py")


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment_report() -> dict[str, Any]:
    """Installed onnxruntime distributions, available providers, GPU hints and problems found."""
    runtimes = {n: v for n in RUNTIME_DISTRIBUTIONS if (v := _installed(n))}
    providers = list(ort.get_available_providers())
    problems: list[str] = []
    if len(runtimes) > 1:
        names = " and ".join(runtimes)
        problems.append(
            f"expected one onnxruntime distribution, got {names}: they overwrite "
            f"each other's files; keep one (pip uninstall -y {' '.join(runtimes)} "
            f"&& pip install onnxruntime-gpu, or onnxruntime for CPU only)"
        )
    gpu_tool = shutil.which("nvidia-smi")
    if gpu_tool and "CUDAExecutionProvider" not in providers:
        problems.append(
            "expected CUDAExecutionProvider on a machine with nvidia-smi, got "
            f"{providers}: install onnxruntime-gpu instead of onnxruntime"
        )
    return {
        "onnxruntime": ort.__version__,
        "distributions": runtimes,
        "device": ort.get_device(),
        "available_providers": providers,
        "nvidia_smi": gpu_tool,
        "usable_cpus": usable_cpus(),
        "export_side": {m: importlib.util.find_spec(m) is not None for m in EXPORT_MODULES},
        "problems": problems,
    }
