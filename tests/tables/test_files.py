"""The input listing both engines share: files, folders searched recursively, globs; hidden
files and markers skipped; in the order given."""

from __future__ import annotations

from pathlib import Path

import pytest

from portanet.errors import InputError
from portanet.tables.files import list_inputs
from tests.scale.conftest import write_inputs


def test_folders_are_searched_for_known_suffixes_skipping_hidden_and_marker_files(tmp_path: Path):
    write_inputs(tmp_path / "data", 20, 2)  # part-0.parquet, part-1.csv
    write_inputs(tmp_path / "data" / "day=2", 20, 1)  # part-0.parquet in a subfolder
    (tmp_path / "data" / "_SUCCESS").write_text("")
    (tmp_path / "data" / ".part-9.csv").write_text("a,b\n")
    (tmp_path / "data" / "_tmp").mkdir()
    (tmp_path / "data" / "_tmp" / "x.parquet").write_text("")
    (tmp_path / "data" / "notes.txt").write_text("hello")
    found = list_inputs([str(tmp_path / "data")])
    assert [(Path(f.path).relative_to(tmp_path).as_posix(), f.fmt) for f in found] == [
        ("data/day=2/part-0.parquet", "parquet"),
        ("data/part-0.parquet", "parquet"),
        ("data/part-1.csv", "csv"),
    ]
    assert [f.row_word for f in found] == ["row", "row", "line"]
    globbed = list_inputs([str(tmp_path / "data" / "*.csv"), str(tmp_path / "data")])
    assert len(globbed) == 3  # the same file named twice is read once


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing.csv", "no such file or folder"),
        ("rows.dat", "expected a file with one of the suffixes .csv .json .*, got suffix '.dat'"),
        (
            "*.jsonl",
            "expected the pattern to match files with one of the suffixes .*, got no match",
        ),
    ],
)
def test_inputs_that_name_nothing_readable_are_refused(tmp_path: Path, name: str, message: str):
    (tmp_path / "rows.dat").write_text("1,2\n")
    with pytest.raises(InputError, match=message):
        list_inputs([str(tmp_path / name)])
