"""The memory preflight reads the real /proc/meminfo and cgroup files (and written copies of
their formats) and refuses only what would not fit."""

import pytest

from portanet.errors import ConversionError
from portanet.export import preflight


def test_estimate_grows_with_the_weights_and_streamed_weights_count_once():
    assert preflight.estimate_peak(0) == preflight.FIXED_BYTES
    assert preflight.estimate_peak(10**9) > preflight.estimate_peak(10**8) > 10**9
    lean = preflight.estimate_peak(10**9, "onnxruntime")
    assert preflight.FIXED_BYTES + 10**9 < lean < preflight.estimate_peak(10**9)
    streamed = preflight.estimate_peak(3 * 10**9, streamed=3 * 10**9 - 10**6)
    assert streamed < preflight.FIXED_BYTES + 3 * 10**9 + 64 * 10**6


def test_lifted_weights_cost_their_own_smaller_factor():
    lifted = preflight.estimate_peak(10**9, "onnxruntime", lifted=10**9 - 10**7)
    in_graph = preflight.BYTES_PER_WEIGHT_BYTE["onnxruntime"] * 10**7
    assert lifted == (
        preflight.FIXED_BYTES + in_graph + preflight.LIFTED_BYTES_PER_WEIGHT_BYTE * (10**9 - 10**7)
    )
    assert lifted < preflight.estimate_peak(10**9, "onnxruntime")


def test_meminfo_and_cgroup_files_are_read(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:    1000000 kB\n")
    assert preflight._meminfo_available(meminfo) == 1_000_000 * 1024
    assert preflight._meminfo_available(tmp_path / "missing") is None
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("123\n")
    assert preflight._cgroup_room(tmp_path) is None  # no limit
    (tmp_path / "memory.max").write_text(f"{4 * 2**30}\n")
    (tmp_path / "memory.current").write_text(f"{2**30}\n")
    assert preflight._cgroup_room(tmp_path) == 3 * 2**30


def test_this_machine_reports_its_memory_and_a_small_model_passes():
    available = preflight.available_memory()
    assert available is not None and available > 0
    assert preflight.check_memory(10**6, "small.h5") == preflight.estimate_peak(10**6)


def test_a_model_too_large_for_the_memory_is_refused_naming_both_figures():
    available = preflight.available_memory()
    assert available is not None
    with pytest.raises(ConversionError) as info:
        preflight.check_memory(available, "huge.h5")
    message = str(info.value)
    assert message.startswith("huge.h5: ") and "(estimate)" in message
    assert f"{available / 1e9:.1f} GB available" in message or "GB available" in message
    assert "--no-memory-check" in message


def test_peak_rss_is_this_process_in_bytes():
    assert 20 * 2**20 < preflight.peak_rss() < 64 * 2**30


def test_release_memory_collects_garbage_and_trims_the_heap():
    import gc
    import weakref

    class Cycle:
        pass

    first, second = Cycle(), Cycle()
    first.other, second.other = second, first  # only the cycle collector frees these
    gone = weakref.ref(first)
    del first, second
    gc.disable()
    try:
        assert preflight.release_memory() is True  # glibc (Linux): malloc_trim ran
    finally:
        gc.enable()
    assert gone() is None
