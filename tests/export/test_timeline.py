"""An export's run record: each stage told as it starts, timed and measured when it ends."""

from __future__ import annotations

import time

from portanet.export.timeline import STAGES, Timeline, run_record


def test_stages_are_told_timed_and_summed_into_the_run_record():
    told: list[str] = []
    timeline = Timeline(told.append)
    for name in ("load", "convert"):
        timeline.start(name)
        held = bytearray(8 << 20)  # the peak is the process's, read when the stage ends
        time.sleep(0.01)
        timeline.end()
        del held
    assert told == [STAGES["load"], STAGES["convert"]]
    assert [r.name for r in timeline.records] == ["load", "convert"]
    assert all(r.seconds >= 0.01 and r.peak_rss > 8 << 20 for r in timeline.records)
    record = run_record(timeline.records, 123)
    assert record["seconds"] == round(sum(r.seconds for r in timeline.records), 3)
    assert record["peak_rss"] == max(r.peak_rss for r in timeline.records)
    assert record["memory_estimate"] == 123
    assert [s["stage"] for s in record["stages"]] == ["load", "convert"]


def test_a_run_with_no_stage_yet_reports_the_process_peak():
    assert run_record([], None)["peak_rss"] > 0
    Timeline(None).start("load")  # no listener: nothing told, nothing fails
