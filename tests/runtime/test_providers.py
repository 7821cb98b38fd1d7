import pytest

from portanet.errors import InputError
from portanet.runtime.providers import resolve, session_options, usable_cpus

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


def test_session_options_are_the_ones_every_portanet_session_runs_with():
    default = session_options()
    assert default.intra_op_num_threads == usable_cpus()
    assert default.inter_op_num_threads == 1
    assert default.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert default.enable_cpu_mem_arena and default.log_severity_level == 4
    lean = session_options(1, memory_arena=False, log_severity=3)
    assert lean.intra_op_num_threads == 1 and not lean.enable_cpu_mem_arena
    assert lean.log_severity_level == 3
    assert session_options(0).intra_op_num_threads == usable_cpus()  # 0: this machine's CPUs
