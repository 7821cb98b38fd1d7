"""``.npz`` archives: one array per input name (one array is enough for a single-input model)
and 1-D arrays for kept columns; members stored uncompressed are memory-mapped. Tensor entry
point only (:func:`tensor_batches`): a table model reads .npy, CSV, Parquet or JSON.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from portanet.errors import InputError
from portanet.schema import TensorSpec
from portanet.tables.tensors import array_batches
from portanet.tables.types import Batch


def tensor_batches(
    source: Path,
    specs: Sequence[TensorSpec],
    keep: Sequence[str],
    batch_rows: int,
    allow_nan: bool,
    max_bytes: int,
) -> Iterator[Batch]:
    """Samples of an ``.npz`` holding one array per input name (one array is enough for a
    single-input model) and 1-D arrays for kept columns; members stored uncompressed
    (``np.savez``) are memory-mapped, compressed ones (``np.savez_compressed``) are read whole."""
    origin = str(source)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(
            f"{origin}: expected an .npz archive (a zip of .npy arrays), got: {exc}"
        ) from exc
    with archive:
        members = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
        wanted = [s.name for s in specs]
        if len(specs) == 1 and wanted[0] not in members:
            arrays_only = [n for n in members if n not in keep]
            if len(arrays_only) != 1:
                raise InputError(
                    f"{origin}: expected an array named {wanted[0]!r} (or a "
                    f"single array), got {sorted(members)}"
                )
            members[wanted[0]] = members[arrays_only[0]]
        missing = [n for n in [*wanted, *keep] if n not in members]
        if missing:
            raise InputError(
                f"{origin}: expected arrays named {[*wanted, *keep]}, got "
                f"{sorted(members)} (missing {missing})"
            )
        arrays = {n: _npz_member(source, archive, members[n], origin) for n in wanted}
        kept = {k: _npz_member(source, archive, members[k], origin) for k in keep}
    for name, values in kept.items():
        if values.ndim != 1:
            raise InputError(
                f"{origin}: kept array {name!r}: expected one value per row, got "
                f"shape {values.shape}"
            )
    yield from array_batches(arrays, specs, kept, origin, batch_rows, allow_nan, max_bytes)


def _npz_member(source: Path, archive: zipfile.ZipFile, member: str, origin: str) -> np.ndarray:
    info = archive.getinfo(member)
    try:
        if info.compress_type == zipfile.ZIP_STORED:
            with open(source, "rb") as handle:
                handle.seek(info.header_offset)
                local = handle.read(30)
                name_length, extra_length = struct.unpack("<HH", local[26:30])
                handle.seek(info.header_offset + 30 + name_length + extra_length)
                major, _ = np.lib.format.read_magic(handle)
                read = (
                    np.lib.format.read_array_header_1_0
                    if major == 1
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read(handle)
                offset = handle.tell()
            if dtype.hasobject:
                raise ValueError("object arrays need pickle")
            if not shape or int(np.prod(shape)) == 0:
                return np.zeros(shape, dtype=dtype)
            return np.memmap(
                source,
                dtype=dtype,
                mode="r",
                offset=offset,
                shape=shape,
                order="F" if fortran else "C",
            )
        with archive.open(member) as stream:
            return np.lib.format.read_array(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError, struct.error) as exc:
        raise InputError(
            f"{origin}: array {member[:-4]!r}: expected a numeric array "
            f"(object arrays are refused), numpy says: {exc}"
        ) from exc
