"""portanet.tables.jsonl: JSON Lines (objects by name or lists by position) and JSON documents,
written by hand and by pandas; every bad line named, repeated keys refused, nested lists for
tensor inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from portanet.errors import InputError
from portanet.schema import TensorSpec
from portanet.tables import Columns, iter_batches, iter_tensor_batches, read_all

COLS = Columns(("a", "b", "c"), 3)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_jsonl_objects_and_lists_and_a_json_document(tmp_path):
    _write(tmp_path, "x.jsonl", '{"a": 1, "b": 2, "c": 3}\n[4, 5, 6]\n')
    assert read_all(tmp_path / "x.jsonl", COLS).features.tolist() == [[1, 2, 3], [4, 5, 6]]
    _write(tmp_path, "x.json", '[{"c": 3, "b": 2, "a": 1}]')
    assert read_all(tmp_path / "x.json", COLS).features.tolist() == [[1, 2, 3]]
    _write(tmp_path, "bad.jsonl", '{"a": 1, "b": "two", "c": 3}\n')
    with pytest.raises(InputError, match="line 1, column 'b': expected a number"):
        read_all(tmp_path / "bad.jsonl", COLS)


@pytest.mark.parametrize("lines", [True, False], ids=["records-lines", "records-document"])
def test_files_written_by_pandas_are_read_in_model_order(tmp_path, lines):
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(
        {"c": rng.normal(size=40), "id": [f"k{i}" for i in range(40)], "b": rng.normal(size=40)}
    )
    frame["a"] = rng.integers(-5, 5, size=40)
    path = tmp_path / ("x.jsonl" if lines else "x.json")
    frame.to_json(path, orient="records", lines=lines, double_precision=15)
    batches = list(iter_batches(path, Columns(("a", "b", "c"), 3, ("id",)), batch_rows=16))
    assert [b.first_row for b in batches] == [0, 16, 32]
    got = np.concatenate([b.features for b in batches])
    np.testing.assert_allclose(got, frame[["a", "b", "c"]].to_numpy(np.float32), rtol=1e-6)
    assert [v for b in batches for v in b.kept["id"]] == frame["id"].tolist()


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '{"a": 1, "b": 2, "c": 3}\n{"a": 1, "b": 2\n',
            "line 2, expected a JSON object or list, got invalid JSON",
        ),
        (
            '{"a": 1, "a": 2, "b": 2, "c": 3}\n',
            r"line 1, expected each field name once, got \['a'\] more than once",
        ),
        ('{"a": 1, "b": 2}\n', "line 1"),
        ("[1, 2]\n", "line 1"),
    ],
    ids=["invalid-json", "repeated-key", "missing-field", "short-list"],
)
def test_a_bad_line_is_named(tmp_path, text, message):
    path = _write(tmp_path, "bad.jsonl", text)
    with pytest.raises(InputError, match=message) as caught:
        read_all(path, COLS)
    assert str(path) in str(caught.value)


def test_blank_lines_are_skipped_but_counted(tmp_path):
    path = _write(tmp_path, "x.jsonl", '[1, 2, 3]\n\n[4, 5, "x"]\n')
    with pytest.raises(InputError, match=r'line 3, column .c.: expected a number, got "x"'):
        read_all(path, COLS)


def test_nested_lists_by_input_name(tmp_path):
    values = np.random.default_rng(3).normal(size=(5, 2, 3))
    extra = np.arange(10.0).reshape(5, 2)
    path = tmp_path / "t.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": i, "seq": v.tolist(), "extra": e.tolist()}) + "\n"
            for i, (v, e) in enumerate(zip(values, extra, strict=True))
        )
    )
    specs = [TensorSpec("seq", (None, 2, 3)), TensorSpec("extra", (None, 2))]
    batches = list(iter_tensor_batches(path, specs, keep=["id"], batch_rows=2))
    np.testing.assert_allclose(
        np.concatenate([b.feeds["seq"] for b in batches]), values.astype(np.float32)
    )
    np.testing.assert_array_equal(np.concatenate([b.feeds["extra"] for b in batches]), extra)
    assert [int(k) for b in batches for k in b.kept["id"]] == list(range(5))
