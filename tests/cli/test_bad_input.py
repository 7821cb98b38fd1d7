"""The bad-input matrix through the real CLI in subprocesses: exit code 2 (0 for header only),
one line on stderr naming the file and the line/row and column, never a traceback."""

import json

import numpy as np
import pytest

from tests.helpers import COMMITTED_ONNX, run_cli

HEADER = "pregnancies,glucose,blood_pressure,skin_thickness,insulin,bmi,diabetes_pedigree,age"
ROW = "6,148,72,35,0,33.6,0.627,50"


def _npy(array, allow_pickle=False):
    def write(path):
        np.save(path, array, allow_pickle=allow_pickle)

    return write


def _text(text):
    return lambda path: path.write_text(text)


def _bytes(data):
    return lambda path: path.write_bytes(data)


CASES = [
    (
        "too-many-columns",
        "in.csv",
        _text("1,2,3,4,5,6,7,8,9\n"),
        2,
        ["in.csv", "line 1", "expected 8 columns, got 9"],
    ),
    (
        "short-row",
        "in.csv",
        _text(f"{HEADER}\n{ROW}\n1,2\n"),
        2,
        ["in.csv", "line 3", "expected 8 columns like the header, got 2"],
    ),
    (
        "missing-column",
        "in.csv",
        _text("pregnancies,glucose\n1,2\n"),
        2,
        ["in.csv", "missing ['blood_pressure'"],
    ),
    (
        "unknown-columns-only",
        "in.csv",
        _text("a,b,c,d,e,f,g,h\n1,2,3,4,5,6,7,8\n"),
        2,
        ["in.csv", "missing ['pregnancies'"],
    ),
    (
        "non-numeric",
        "in.csv",
        _text(f"{HEADER}\n{ROW}\n{ROW}\n6,148,72,35,0,thirty,0.6,50\n"),
        2,
        ["in.csv", "line 4", "column 'bmi'", "'thirty'"],
    ),
    (
        "nan",
        "in.csv",
        _text(f"{HEADER}\n{ROW}\n6,nan,72,35,0,33.6,0.627,50\n"),
        2,
        ["in.csv", "line 3", "column 'glucose'", "NaN"],
    ),
    (
        "inf",
        "in.csv",
        _text(f"{HEADER}\n6,148,72,35,0,33.6,0.627,inf\n"),
        2,
        ["in.csv", "line 2", "column 'age'", "inf"],
    ),
    (
        "empty-cell",
        "in.csv",
        _text(f"{HEADER}\n6,148,,35,0,33.6,0.627,50\n"),
        2,
        ["in.csv", "line 2", "column 'blood_pressure'", "empty"],
    ),
    ("empty-file", "in.csv", _text(""), 2, ["in.csv", "empty file"]),
    (
        "binary-garbage",
        "in.csv",
        _bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20),
        2,
        ["in.csv", "line 3", "binary data"],
    ),
    (
        "pickled-npy",
        "in.npy",
        _npy(np.array([{"x": 1}], dtype=object), True),
        2,
        ["in.npy", "needs pickle"],
    ),
    (
        "object-array-npy",
        "in.npy",
        _npy(np.array([[1, "a"]] * 2, dtype=object), True),
        2,
        ["in.npy", "object arrays are refused"],
    ),
    (
        "string-dtype-npy",
        "in.npy",
        _npy(np.array([["1"] * 8])),
        2,
        ["in.npy", "expected a numeric array, got dtype <U1"],
    ),
    (
        "wrong-shape-npy",
        "in.npy",
        _npy(np.zeros((3, 5))),
        2,
        ["in.npy", "expected an array of shape (rows, 8), got (3, 5)"],
    ),
    (
        "nan-in-npy",
        "in.npy",
        _npy(np.array([[1.0] * 8, [1.0] * 7 + [np.nan]])),
        2,
        ["in.npy", "row 1", "column 'age'"],
    ),
    ("not-an-npy", "in.npy", _text("hello"), 2, ["in.npy", "expected a .npy file", "hello"]),
    (
        "invalid-json",
        "in.json",
        _text('[{"glucose": 1,,}]'),
        2,
        ["in.json", "expected valid JSON", "line 1 column"],
    ),
    ("json-not-a-list", "in.json", _text('{"glucose": 1}'), 2, ["in.json", "expected a JSON list"]),
    (
        "jsonl-bad-line",
        "in.jsonl",
        _text('[1,2,3,4,5,6,7,8]\n{"oops"\n'),
        2,
        ["in.jsonl", "line 2", "invalid JSON"],
    ),
    (
        "jsonl-string-value",
        "in.jsonl",
        _text(
            json.dumps(dict(zip(HEADER.split(","), [1, "x", 3, 4, 5, 6, 7, 8], strict=False)))
            + "\n"
        ),
        2,
        ["in.jsonl", "line 1", "column 'glucose'", "expected a number"],
    ),
    (
        "bad-parquet",
        "in.parquet",
        _bytes(b"PAR1 not really"),
        2,
        ["in.parquet", "expected a Parquet file"],
    ),
    (
        "unknown-suffix",
        "in.xlsx",
        _text("x"),
        2,
        ["in.xlsx", "expected a file with one of the suffixes"],
    ),
    (
        "directory",
        "dir.csv",
        lambda path: path.mkdir(),
        2,
        ["dir.csv", "expected a folder holding files"],
    ),
    ("missing-file", "nowhere.csv", lambda path: None, 2, ["nowhere.csv", "no such file"]),
    ("header-only", "in.csv", _text(HEADER + "\n"), 0, ["probability,label"]),
]


@pytest.mark.parametrize("name, filename, make, code, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_matrix(tmp_path, name, filename, make, code, expected):
    path = tmp_path / filename
    make(path)
    result = run_cli("infer", str(COMMITTED_ONNX), str(path), timeout=120)
    stderr, stdout = result.stderr.decode(), result.stdout.decode()
    assert result.returncode == code, (stderr, stdout)
    if code == 0:
        assert stdout.strip() == expected[0]
        return
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("error: ")
    for fragment in expected:
        assert fragment in stderr, (fragment, stderr)


def test_debug_shows_a_traceback_for_bad_input(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("1,2\n")
    result = run_cli("--debug", "infer", str(COMMITTED_ONNX), str(path), timeout=120)
    assert result.returncode != 0 and "Traceback" in result.stderr.decode()


def test_pickle_payload_is_never_executed(tmp_path):
    sentinel = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    path = tmp_path / "evil.npy"
    np.save(path, np.array([Exploit()], dtype=object), allow_pickle=True)
    assert not sentinel.exists()
    result = run_cli("infer", str(COMMITTED_ONNX), str(path), timeout=120)
    assert result.returncode == 2 and not sentinel.exists()
    # The payload is live: unpickling the same file does run it, so the check above can fail.
    opened = np.load(path, allow_pickle=True)
    opened[0].close()  # the payload's file object
    assert sentinel.exists()
