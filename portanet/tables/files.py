"""The input files of a batch inference run: files, folders (searched recursively) and glob
patterns, local paths or any URI that pyarrow's filesystems understand. Shared by the local
engine and the Ray engine, so that both take the same inputs.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from portanet.errors import InputError

#: Table formats by suffix.
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".npy": "npy",
    ".npz": "npz",
}
#: The word that numbers a format's rows in messages.
ROW_WORDS = {
    "parquet": "row",
    "csv": "line",
    "tsv": "line",
    "jsonl": "line",
    "json": "record",
    "npy": "row",
    "npz": "row",
}


@dataclass(frozen=True)
class InputFile:
    """One input file: its path or URI as the user wrote it, its format and its size."""

    path: str
    fmt: str
    size: int

    @property
    def row_word(self) -> str:
        """What numbers this file's rows in messages: ``line`` (CSV, JSONL), ``row``
        (Parquet, NPY), ``record`` (a JSON document)."""
        return ROW_WORDS[self.fmt]


def filesystem(location: str) -> tuple[Any, str, str]:
    """(pyarrow filesystem, path inside it, prefix that turns such a path back into a URI)."""
    import pyarrow.fs as pafs

    if "://" not in location:
        location = os.path.abspath(location)
    try:
        fs, inner = pafs.FileSystem.from_uri(location)
    except (ValueError, OSError) as exc:
        raise InputError(
            f"{location}: expected a local path or a URI that pyarrow's "
            f"filesystems understand, got an error: {exc}"
        ) from exc
    at = location.rfind(inner) if inner else -1
    prefix = location[:at] if at > 0 else ""
    return fs, inner, prefix


#: Suffixes taken only when a file is named directly (a folder's notes.txt is not a table).
DIRECT_ONLY = (".txt",)


def _format_of(path: str, direct: bool = False) -> str | None:
    suffix = os.path.splitext(path)[1].lower()
    if suffix in DIRECT_ONLY and not direct:
        return None
    return FORMATS.get(suffix)


def _suffixes() -> str:
    return " ".join(sorted(FORMATS))


def list_inputs(inputs: Sequence[str]) -> list[InputFile]:
    """Every input file named by ``inputs`` (files, folders searched recursively, globs).

    Folders contribute the files with a known suffix (names starting with ``.`` or ``_``
    skipped: hidden files, ``._*`` resource forks, ``_SUCCESS`` markers); a file named directly
    must have a known suffix. The same file named twice is read once; files come in the order
    given, a folder's or a glob's sorted by path. Raises :class:`InputError` when an
    input does not exist or nothing is found.
    """
    import pyarrow.fs as pafs

    if not inputs:
        raise InputError("expected at least one input file, folder or glob, got none")
    found: dict[str, InputFile] = {}
    for given in inputs:
        direct = None
        if any(c in given for c in "*?["):
            first = min(given.index(c) for c in "*?[" if c in given)
            base = given[: given.rfind("/", 0, first) + 1] or "."
            fs, inner, prefix = filesystem(base)
            pattern = inner.rstrip("/") + "/" + given[len(base) :]
            infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True, allow_not_found=True))
            matched = [
                i
                for i in infos
                if i.type == pafs.FileType.File
                and fnmatch.fnmatchcase(i.path, pattern)
                and _format_of(i.path)
                and not _hidden(i.path, inner)
            ]
            if not matched:
                raise InputError(
                    f"{given}: expected the pattern to match files with one of the suffixes "
                    f"{_suffixes()}, got no match"
                )
        else:
            fs, inner, prefix = filesystem(given)
            info = fs.get_file_info(inner)
            if info.type == pafs.FileType.NotFound:
                raise InputError(f"{given}: no such file or folder")
            if info.type == pafs.FileType.Directory:
                infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
                matched = [
                    i
                    for i in infos
                    if i.type == pafs.FileType.File
                    and _format_of(i.path)
                    and not _hidden(i.path, inner)
                ]
                if not matched:
                    raise InputError(
                        f"{given}: expected a folder holding files with one of the suffixes "
                        f"{_suffixes()}, got none"
                    )
            else:
                if not _format_of(inner, direct=True):
                    raise InputError(
                        f"{given}: expected a file with one of the suffixes {_suffixes()}, got "
                        f"suffix {os.path.splitext(inner)[1] or '(none)'!r}"
                    )
                matched = [info]
                direct = given
        for item in sorted(matched, key=lambda i: i.path):
            key = prefix + item.path
            path = direct or key
            if key not in found:
                found[key] = InputFile(
                    path, _format_of(item.path, direct=bool(direct)) or "", int(item.size or 0)
                )
    return list(found.values())


def _hidden(path: str, root: str) -> bool:
    relative = path[len(root) :].strip("/")
    return any(part.startswith((".", "_")) for part in relative.split("/"))
