"""JSON Lines (one record or row per line) and JSON documents holding a list of them.

Entry points: :func:`table_batches` (a table model's feature batches), :func:`read_rows` (rows
on any pyarrow filesystem, for the Ray engine's read tasks) and :func:`tensor_batches` (nested
lists for inputs of any rank). Values are judged by :mod:`portanet.tables.values`: a line that
is not JSON, a missing field or a value that is not a number costs its row (a reason), not the
file, so ``on_error="skip"`` can set it aside.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.schema import TensorSpec
from portanet.tables.tensors import fit, rows_for_bytes, sample_of, sample_text
from portanet.tables.types import Batch, Columns, duplicate_names
from portanet.tables.values import Rows, ValuePolicy, apply


def table_batches(
    path: Any, fmt: str, columns: Columns, batch_rows: int, policy: ValuePolicy
) -> Iterator[Batch]:
    """Table entry point: JSON Lines (``fmt="jsonl"``, one record or row per line) or a JSON
    document with a list of them (``"json"``), ``-`` for stdin, judged by ``policy``."""
    origin = "<stdin>" if str(path) == "-" else str(path)
    records, word = numbered_records(path, fmt, origin)
    names = _names(columns)
    for row, group in in_groups(records, batch_rows):
        yield apply(_rows(group, columns, row, word, origin), names, columns.dtype, policy, origin)


def read_rows(
    fs: Any, inner: str, origin: str, columns: Columns, batch_rows: int, fmt: str = "jsonl"
) -> Iterator[Rows]:
    """Ray (and table) entry point: the rows of a JSON Lines file (or a JSON document) on any
    pyarrow filesystem, numbered by line (by record for a document)."""
    if fmt == "json":
        with fs.open_input_stream(inner) as stream:
            text = stream.read().decode("utf-8")
        records: Iterator[tuple[int, Any]] = enumerate(json_records(text, origin), start=1)
        word = "record"
    else:
        records = jsonl_records(
            io.TextIOWrapper(fs.open_input_stream(inner), encoding="utf-8"), origin
        )
        word = "line"
    for row, group in in_groups(records, batch_rows):
        yield _rows(group, columns, row, word, origin)


def _names(columns: Columns) -> list[str]:
    return list(columns.feature_names or [f"column_{i}" for i in range(columns.width)])


def numbered_records(path: Any, fmt: str, origin: str) -> tuple[Iterator[tuple[int, Any]], str]:
    """(number, record) pairs of a JSON document's list (``record`` numbers) or of a JSON Lines
    file or stdin (``line`` numbers), and the word that names the number in messages."""
    if fmt == "json":
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
        return enumerate(json_records(text, origin), start=1), "record"
    stream = sys.stdin if str(path) == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    return jsonl_records(stream, origin), "line"


def in_groups(items: Iterator[Any], size: int) -> Iterator[tuple[int, list[Any]]]:
    """Consecutive groups of ``size`` items (the last may be shorter), each with the index of
    its first item."""
    group: list[Any] = []
    first = 0
    for item in items:
        group.append(item)
        if len(group) >= size:
            yield first, group
            first += len(group)
            group = []
    if group:
        yield first, group


def jsonl_records(stream: Any, origin: str) -> Iterator[tuple[int, Any]]:
    with stream:
        for number, text in enumerate(stream, start=1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text, object_pairs_hook=unique_keys)
            except json.JSONDecodeError as exc:
                yield (
                    number,
                    Unreadable(f"expected a JSON object or list, got invalid JSON ({exc.msg})"),
                )
            except DuplicateKeys as exc:
                yield (
                    number,
                    Unreadable(f"expected each field name once, got {exc.args[0]} more than once"),
                )
            except UnicodeDecodeError as exc:
                raise InputError(f"{origin}: line {number}: expected UTF-8 text: {exc}") from exc


class Unreadable:
    """A line that is not a JSON record, and why (it costs its row, not the file)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class DuplicateKeys(ValueError):
    """A JSON object names a field twice (``json`` would silently keep the last)."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads` that refuses repeated keys."""
    repeated = duplicate_names([k for k, _ in pairs])
    if repeated:
        raise DuplicateKeys(repeated)
    return dict(pairs)


def _rows(
    items: list[tuple[int, Any]], columns: Columns, first_row: int, word: str, origin: str
) -> Rows:
    """Records or rows as :class:`Rows`: features as float64 (``null`` as NaN, marked missing)
    and a reason for each record that cannot give its features."""
    names = columns.feature_names
    count = len(items)
    matrix = np.full((count, columns.width), np.nan, dtype=np.float64)
    nulls = np.zeros((count, columns.width), dtype=bool)
    kept: dict[str, list[Any]] = {k: [] for k in columns.keep}
    reasons: list[str | None] = [None] * count
    for index, (number, record) in enumerate(items):
        values, why = _record_values(record, columns, word, number, origin)
        for k in columns.keep:
            kept[k].append(record.get(k) if isinstance(record, dict) else None)
            if why is None and isinstance(record, dict) and k not in record:
                why = f"kept field {k!r} is missing"
        if why is None:
            for col, value in enumerate(values):
                if value is None:
                    nulls[index, col] = True
                elif isinstance(value, bool) or not isinstance(value, (int, float)):
                    name = names[col] if names else f"column_{col}"
                    why = f"column {name!r}: expected a number, got {json.dumps(value)[:40]}"
                    break
                else:
                    matrix[index, col] = value
        if why is not None:
            reasons[index] = why
    numbers = np.array([number for number, _ in items], dtype=np.int64)
    missing = [nulls[:, c] if nulls[:, c].any() else None for c in range(columns.width)]
    return Rows(
        matrix,
        numbers,
        first_row,
        {k: np.asarray(v, dtype=object) for k, v in kept.items()},
        word,
        missing,
        reasons if any(r is not None for r in reasons) else None,
        "null",
    )


def _record_values(
    record: Any, columns: Columns, word: str, number: int, origin: str
) -> tuple[list[Any], str | None]:
    """A record's feature values in model order, or the reason it has none. Reasons about the
    shape of the records (named fields for a model without names) fail the file: they hold for
    every record."""
    names = columns.feature_names
    if isinstance(record, Unreadable):
        return [], record.reason
    if isinstance(record, dict) and names is None and columns.positional:
        values = [v for k, v in record.items() if k not in columns.keep]
        if len(values) != columns.width:
            return [], f"expected {columns.width} values, got {len(values)}"
        return values, None
    if isinstance(record, dict):
        if names is None:
            raise InputError(
                f"{origin}: {word} {number}: named fields need feature names in the model "
                f"metadata, and "
                f"the model has none; expected rows as lists in the model's column order"
            )
        missing = [n for n in names if n not in record]
        if missing:
            return [], f"expected the fields {list(names)}, got {list(record)} (missing {missing})"
        return [record[n] for n in names], None
    if isinstance(record, list):
        if columns.keep:
            raise InputError(
                f"{origin}: {word} {number}: kept columns need records with named fields, "
                f"got a list"
            )
        if len(record) != columns.width:
            return [], f"expected {columns.width} values, got {len(record)}"
        return record, None
    return [], f"expected an object or a list, got {type(record).__name__}"


def json_records(text: str, origin: str) -> list[Any]:
    """Parse a JSON document holding a list of records (objects) or rows (lists)."""
    try:
        data = json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{origin}: expected valid JSON, got an error at line {exc.lineno} "
            f"column {exc.colno}: {exc.msg}"
        ) from exc
    except DuplicateKeys as exc:
        raise InputError(
            f"{origin}: expected each field name once per record, got {exc.args[0]} more than once"
        ) from exc
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    if not isinstance(data, list):
        raise InputError(
            f"{origin}: expected a JSON list of records or rows, got {type(data).__name__}"
        )
    return data


# --- tensor entry point: nested lists for inputs of any rank -------------------------------------


def tensor_batches(
    path: Any,
    fmt: str,
    specs: Sequence[TensorSpec],
    keep: Sequence[str],
    batch_rows: int,
    allow_nan: bool,
    max_bytes: int,
) -> Iterator[Batch]:
    """Records ``{"<input>": nested list, ...}`` (kept fields alongside), or for a one-input
    model bare nested lists, one sample per line (JSONL) or per list item (JSON)."""
    origin = "<stdin>" if str(path) == "-" else str(path)
    records, word = numbered_records(path, fmt, origin)
    step = rows_for_bytes(
        [sum(int(np.prod(sample_of(s))) * s.numpy_dtype.itemsize for s in specs)],
        1,
        batch_rows,
        max_bytes,
    )
    for row, group in in_groups(records, step):
        yield _json_batch(group, specs, keep, origin, word, row, allow_nan)


def _json_batch(
    items: list[tuple[int, Any]],
    specs: Sequence[TensorSpec],
    keep: Sequence[str],
    origin: str,
    word: str,
    row: int,
    allow_nan: bool,
) -> Batch:
    samples: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    kept: dict[str, list[Any]] = {k: [] for k in keep}
    for number, record in items:
        if isinstance(record, Unreadable):
            raise InputError(f"{origin}: {word} {number}: {record.reason}")
        if isinstance(record, list) and len(specs) == 1 and not keep:
            record = {specs[0].name: record}
        if not isinstance(record, dict):
            raise InputError(
                f"{origin}: {word} {number}: expected an object with the fields "
                f"{[s.name for s in specs]}, got {type(record).__name__}"
            )
        missing = [n for n in [*(s.name for s in specs), *keep] if n not in record]
        if missing:
            raise InputError(
                f"{origin}: {word} {number}: expected the fields "
                f"{[*(s.name for s in specs), *keep]}, got {list(record)} "
                f"(missing {missing})"
            )
        for spec in specs:
            samples[spec.name].append(_sample(record[spec.name], spec, origin, word, number))
        for k in keep:
            kept[k].append(record[k])
    numbers = [number for number, _ in items]
    feeds = {}
    for spec in specs:
        shapes = {a.shape for a in samples[spec.name]}
        if len(shapes) > 1:
            raise InputError(
                f"{origin}: {word}s {numbers[0]}-{numbers[-1]}: input "
                f"{spec.name!r}: expected samples of one shape within a batch, got "
                f"{sorted(shapes)}"
            )
        feeds[spec.name] = fit(
            np.stack(samples[spec.name]), spec, origin, row, allow_nan, word, numbers
        )
    first = feeds[specs[0].name]
    return Batch(first, {k: np.asarray(v, dtype=object) for k, v in kept.items()}, row, feeds)


def _sample(value: Any, spec: TensorSpec, origin: str, word: str, number: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        shown = json.dumps(value)[:60]
        raise InputError(
            f"{origin}: {word} {number}: input {spec.name!r}: expected a "
            f"rectangular nested list of numbers, got {shown}"
        ) from None
    if array.ndim != spec.rank - 1 or any(
        isinstance(want, int) and want != got
        for want, got in zip(spec.shape[1:], array.shape, strict=False)
    ):
        raise InputError(
            f"{origin}: {word} {number}: input {spec.name!r}: expected a sample of "
            f"shape {sample_text(spec)}, got {array.shape}"
        )
    return array
