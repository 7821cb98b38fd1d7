"""JSON Lines (one record or row per line) and JSON documents holding a list of them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from portanet.errors import InputError
from portanet.runtime.inputs import first_out_of_range, range_message
from portanet.tables.types import Batch, Columns, duplicate_names


def json_batches(
    path: Any, fmt: str, columns: Columns, batch_rows: int, allow_nan: bool
) -> Iterator[Batch]:
    """JSON Lines (one record or row per line) or a JSON document with a list of them."""
    origin = "<stdin>" if str(path) == "-" else str(path)
    records, word = numbered_records(path, fmt, origin)
    for row, group in in_groups(records, batch_rows):
        yield _records_batch(group, columns, origin, row, word, allow_nan)


def numbered_records(path: Any, fmt: str, origin: str) -> tuple[Iterator[tuple[int, Any]], str]:
    """(number, record) pairs of a JSON document's list (``record`` numbers) or of a JSON Lines
    file or stdin (``line`` numbers), and the word that names the number in messages."""
    if fmt == "json":
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
        return enumerate(json_records(text, origin), start=1), "record"
    # the caller's generator owns (and closes) the stream as it reads it
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


def jsonl_records(stream: IO[str], origin: str) -> Iterator[tuple[int, Any]]:
    with stream:
        for number, text in enumerate(stream, start=1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text, object_pairs_hook=unique_keys)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{origin}: line {number}: expected a JSON object or list, "
                    f"got invalid JSON ({exc.msg})"
                ) from exc
            except DuplicateKeys as exc:
                raise InputError(
                    f"{origin}: line {number}: expected each field name once, "
                    f"got {exc.args[0]} more than once"
                ) from exc


class DuplicateKeys(ValueError):
    """A JSON object names a field twice (``json`` would silently keep the last)."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads` that refuses repeated keys."""
    repeated = duplicate_names([k for k, _ in pairs])
    if repeated:
        raise DuplicateKeys(repeated)
    return dict(pairs)


def _records_batch(
    items: list[tuple[int, Any]],
    columns: Columns,
    origin: str,
    row: int,
    word: str,
    allow_nan: bool,
) -> Batch:
    names = columns.feature_names
    matrix = np.empty((len(items), columns.width), dtype=np.float64)
    nulls = np.zeros((len(items), columns.width), dtype=bool)
    kept: dict[str, list[Any]] = {k: [] for k in columns.keep}
    for index, (number, record) in enumerate(items):
        if isinstance(record, dict) and names is None and columns.positional:
            values = [v for k, v in record.items() if k not in columns.keep]
            if len(values) != columns.width:
                raise InputError(
                    f"{origin}: {word} {number}: expected {columns.width} values, got {len(values)}"
                )
            for k in columns.keep:
                if k not in record:
                    raise InputError(f"{origin}: {word} {number}: kept field {k!r} is missing")
                kept[k].append(record[k])
        elif isinstance(record, dict):
            if names is None:
                raise InputError(
                    f"{origin}: {word} {number}: named fields need feature names "
                    f"in the model metadata, and the model has none; expected "
                    f"rows as lists in the model's column order"
                )
            missing = [n for n in names if n not in record]
            if missing:
                raise InputError(
                    f"{origin}: {word} {number}: expected the fields {list(names)}"
                    f", got {list(record)} (missing {missing})"
                )
            values = [record[n] for n in names]
            for k in columns.keep:
                if k not in record:
                    raise InputError(f"{origin}: {word} {number}: kept field {k!r} is missing")
                kept[k].append(record[k])
        elif isinstance(record, list):
            if columns.keep:
                raise InputError(
                    f"{origin}: {word} {number}: kept columns need records "
                    f"with named fields, got a list"
                )
            if len(record) != columns.width:
                raise InputError(
                    f"{origin}: {word} {number}: expected {columns.width} values, got {len(record)}"
                )
            values = record
        else:
            raise InputError(
                f"{origin}: {word} {number}: expected an object or a list, "
                f"got {type(record).__name__}"
            )
        for col, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (int, float)) and value is not None:
                name = names[col] if names else f"column_{col}"
                raise InputError(
                    f"{origin}: {word} {number}, column {name!r}: expected a "
                    f"number, got {json.dumps(value)[:40]}"
                )
            if value is None:
                nulls[index, col] = True
                matrix[index, col] = np.nan
            else:
                matrix[index, col] = value
    found = first_out_of_range(matrix, np.dtype(columns.dtype))
    if found is not None:
        bad = found[0]
        col = (
            int(
                np.argmax(
                    np.isfinite(matrix[bad]) & (np.abs(matrix[bad]) > np.finfo(columns.dtype).max)
                )
            )
            if np.dtype(columns.dtype).kind == "f"
            else 0
        )
        name = names[col] if names else f"column_{col}"
        raise InputError(
            f"{origin}: {word} {items[bad][0]}, column {name!r}: expected a "
            f"number, {range_message(found[1], columns.dtype)}"
        )
    if not allow_nan and not np.isfinite(matrix).all():
        bad, col = map(int, np.argwhere(~np.isfinite(matrix))[0])
        name = names[col] if names else f"column_{col}"
        value = matrix[bad, col]
        shown = (
            "null"
            if nulls[bad, col]
            else "NaN"
            if np.isnan(value)
            else ("inf" if value > 0 else "-inf")
        )
        raise InputError(
            f"{origin}: {word} {items[bad][0]}, column {name!r}: expected a "
            f"finite number, got {shown} (allow_nan passes NaN/Inf through)"
        )
    return Batch(matrix.astype(columns.dtype), {k: np.asarray(v) for k, v in kept.items()}, row)


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
