"""Read a ``.keras`` archive for what it is before Keras opens it.

A ``.keras`` file is a zip: ``config.json`` (the architecture), ``metadata.json`` (the Keras
version that wrote it), ``model.weights.h5`` or ``model.weights.npz`` (the weights) and an
optional ``assets/`` folder. Keras reads members by name, and a zip may hold two members with
the same name — the central directory lists both, and which one a reader gets depends on the
reader — so a harmless ``config.json`` can sit beside a pickle that Keras would unpickle. Before
any of it reaches Keras, :func:`inspect_archive` refuses (:class:`UnsafeModelError`):

* duplicate member names, members outside the known layout, path tricks in names (absolute
  paths, ``..``, backslashes, NUL), symbolic links, declared sizes beyond the limit;
* ``.npz`` weights holding object (pickled) arrays or anything but ``.npy`` members — read from
  the ``.npy`` headers only, never loaded, never unpickled;
* ``.h5`` weights with object dtypes, external links or external storage (the HDF5 probe of
  :mod:`portanet.export.keras.h5_probe`, in a child process).

It returns the parsed ``config.json`` and ``metadata.json``. Export side only; pure Python.
"""

from __future__ import annotations

import io
import json
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from portanet.errors import ModelLoadError, UnsafeModelError
from portanet.export.keras.h5_probe import probe

CONFIG_MEMBER = "config.json"
METADATA_MEMBER = "metadata.json"
WEIGHT_MEMBERS = ("model.weights.h5", "model.weights.npz")
ASSETS_FOLDER = "assets/"
#: Largest ``config.json``/``metadata.json`` read (bytes).
MAX_JSON_BYTES = 64 << 20


@dataclass
class KerasArchive:
    """What a checked ``.keras`` archive holds."""

    config: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None

    @property
    def keras_version(self) -> str | None:
        """The version of Keras that wrote the file (``metadata.json``), if it says."""
        version = self.metadata.get("keras_version")
        return str(version) if version else None


def _refuse(path: Path, why: str) -> UnsafeModelError:
    return UnsafeModelError(f"{path}: {why}; refused")


def _check_name(path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    pure = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\0" in name
        or pure.is_absolute()
        or ".." in pure.parts
        or (len(name) > 1 and name[1] == ":")
    ):
        raise _refuse(path, f"zip member {name!r} has a path that leaves the archive")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _refuse(path, f"zip member {name!r} is a symbolic link")
    known = name in (CONFIG_MEMBER, METADATA_MEMBER, *WEIGHT_MEMBERS) or name.startswith(
        ASSETS_FOLDER
    )
    if not known:
        raise _refuse(
            path,
            f"zip member {name!r} is not part of a Keras archive (expected "
            f"{CONFIG_MEMBER}, {METADATA_MEMBER}, {' or '.join(WEIGHT_MEMBERS)} "
            f"and {ASSETS_FOLDER}…)",
        )


def _duplicates(names: list[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]


def _json_member(path: Path, archive: zipfile.ZipFile, name: str) -> Any:
    with archive.open(name) as handle:
        raw = handle.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise _refuse(path, f"{name} is larger than {MAX_JSON_BYTES:,} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            f"{path}: expected {name} to hold JSON, got invalid text ({exc})"
        ) from None


def check_npz(data: bytes, origin: str, max_bytes: int) -> None:
    """Refuse an ``.npz`` that holds anything but plain numeric ``.npy`` arrays: duplicate or
    odd members, object (pickled) dtypes, declared sizes over ``max_bytes``. Reads headers only."""
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ModelLoadError(f"{origin}: expected an .npz (zip) of weights, got: {exc}") from None
    with inner:
        names = [i.filename for i in inner.infolist()]
        repeated = _duplicates(names)
        if repeated:
            raise UnsafeModelError(f"{origin}: holds two members named {repeated[0]!r}; refused")
        for name in names:
            parts = PurePosixPath(name)
            if not name.endswith(".npy") or parts.is_absolute() or ".." in parts.parts:
                raise UnsafeModelError(f"{origin}: member {name!r} is not an .npy array; refused")
            with inner.open(name) as handle:
                try:
                    version = np.lib.format.read_magic(handle)
                    reader = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = reader(handle)
                except (ValueError, OSError) as exc:
                    raise ModelLoadError(
                        f"{origin}: member {name!r} is not a valid .npy array ({exc})"
                    ) from None
            if dtype.hasobject:
                raise UnsafeModelError(
                    f"{origin}: array {name!r} has dtype {dtype} (Python "
                    f"objects, stored as a pickle that would run code when "
                    f"loaded); refused"
                )
            declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if declared > max_bytes:
                raise UnsafeModelError(
                    f"{origin}: array {name!r} declares shape {shape}, "
                    f"{declared:,} bytes (limit {max_bytes:,}); refused as "
                    f"absurd"
                )


def inspect_archive(path: Path, *, max_member_bytes: int) -> KerasArchive:
    """Check a ``.keras`` archive member by member (see the module docstring) and return its
    configuration and metadata. Nothing in it is loaded by Keras or unpickled."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{path}: expected a .keras archive (zip), got: {exc}") from None
    with archive:
        infos = archive.infolist()
        repeated = _duplicates([i.filename for i in infos])
        if repeated:
            raise _refuse(
                path,
                f"the archive holds {[i.filename for i in infos].count(repeated[0])}"
                f" members named {repeated[0]!r} (a reader may take either)",
            )
        for info in infos:
            _check_name(path, info)
            if info.file_size > max_member_bytes:
                raise _refuse(
                    path,
                    f"zip member {info.filename!r} declares {info.file_size:,} "
                    f"bytes (limit {max_member_bytes:,})",
                )
        names = {i.filename for i in infos}
        if CONFIG_MEMBER not in names:
            raise ModelLoadError(
                f"{path}: expected a .keras archive with {CONFIG_MEMBER}, got "
                f"members {sorted(names)[:8]}"
            )
        weights = [n for n in WEIGHT_MEMBERS if n in names]
        if len(weights) > 1:
            raise _refuse(path, f"the archive holds both {weights[0]} and {weights[1]}")
        config = _json_member(path, archive, CONFIG_MEMBER)
        metadata = _json_member(path, archive, METADATA_MEMBER) if METADATA_MEMBER in names else {}
        if weights and weights[0].endswith(".npz"):
            check_npz(archive.read(weights[0]), f"{path} [{weights[0]}]", max_member_bytes)
        elif weights:
            _probe_member(path, archive, weights[0], max_member_bytes)
    return KerasArchive(
        config, metadata if isinstance(metadata, dict) else {}, weights[0] if weights else None
    )


def _probe_member(path: Path, archive: zipfile.ZipFile, name: str, max_bytes: int) -> None:
    """Probe an HDF5 member in a child process, from a private temporary copy."""
    with tempfile.TemporaryDirectory(prefix="portanet-keras-") as folder:
        copy = Path(folder) / "weights.h5"
        with archive.open(name) as source, open(copy, "wb") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)
        try:
            probe(copy, max_dataset_bytes=max_bytes)
        except UnsafeModelError as exc:
            raise UnsafeModelError(str(exc).replace(str(copy), f"{path} [{name}]")) from None
        except ModelLoadError as exc:
            raise ModelLoadError(str(exc).replace(str(copy), f"{path} [{name}]")) from None
