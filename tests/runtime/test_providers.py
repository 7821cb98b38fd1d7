import pytest

from portanet.errors import InputError
from portanet.runtime.providers import resolve, usable_cpus

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


@pytest.mark.parametrize(
    "requested, available, expected",
    [
        ("auto", [CPU], [CPU]),
        ("auto", [TRT, CUDA, CPU], [TRT, CUDA, CPU]),
        ("auto", [CUDA, CPU], [CUDA, CPU]),
        ("cpu", [CUDA, CPU], [CPU]),
        ("cuda", [CPU], [CUDA, CPU]),
        ("tensorrt", [CPU], [TRT, CPU]),
        (["cuda", "cpu"], [CPU], [CUDA, CPU]),
        ([CUDA], [CUDA, CPU], [CUDA, CPU]),
    ],
    ids=[
        "auto-cpu",
        "auto-trt",
        "auto-cuda",
        "cpu",
        "cuda-kept-to-detect",
        "tensorrt",
        "list",
        "full-name",
    ],
)
def test_resolve(requested, available, expected):
    assert resolve(requested, available) == expected


def test_resolve_refuses_unknown_names():
    with pytest.raises(InputError, match="expected auto"):
        resolve("gpu", [CPU])


def test_usable_cpus_respects_affinity():
    import os

    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
