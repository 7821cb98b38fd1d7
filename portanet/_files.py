"""Files: atomic writes and checksums, one helper each.

Atomic writes go to a temporary file beside the target, fsync, then ``os.replace``: a process
killed at any moment leaves either the previous file or the complete new one. The new file gets
the permissions any other tool's output gets (0666 less the umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

#: A path a command reads or writes, or ``None`` when not given ("-" is a standard stream).
MaybePath = str | os.PathLike[str] | None


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``target``.

    The temporary name keeps the target's suffix (some writers choose their format by it). On an
    exception the temporary file is removed and the target is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(handle)
    temporary = Path(name)
    os.chmod(temporary, 0o666 & ~current_umask())
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def check_writable(target: str | os.PathLike[str]) -> None:
    """Refuse, before any work, an output path that cannot be written: a directory, or a folder
    (the nearest existing one, since missing folders are created) this process may not write."""
    from portanet.errors import InputError

    path = Path(target)
    if path.is_dir():
        raise InputError(f"{path}: expected a file path to write, got a directory")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            f"{path}: expected a folder this process may write, got {folder} (permission denied)"
        )


def _same_or_inside(output: Path, source: Path) -> bool:
    """True when writing ``output`` would replace ``source`` or a file inside it (a SavedModel
    directory): the same resolved path, the same file through a link, or a path under it."""
    target, original = output.resolve(), source.resolve()
    if target == original or (source.is_dir() and original in target.parents):
        return True
    try:
        return output.exists() and source.exists() and os.path.samefile(output, source)
    except OSError:
        return False


def refuse_overwrite(outputs: Mapping[str, MaybePath], inputs: Mapping[str, MaybePath]) -> None:
    """Before any work: refuse (:class:`~portanet.errors.InputError`, exit 2) when a command
    would write over one of its own inputs, or write two outputs to one file.

    ``outputs`` and ``inputs`` map what names a path on the command line (``"--output"``,
    ``"MODEL"``, ``"--data"``) to the path; ``None`` and ``"-"`` (standard streams) are skipped.
    The one check every command that writes files runs (export, report, optimize, infer, bench).
    """
    from portanet.errors import InputError

    given = {k: Path(v) for k, v in outputs.items() if v is not None and str(v) != "-"}
    reads = {k: Path(v) for k, v in inputs.items() if v is not None and str(v) != "-"}
    seen: dict[str, Path] = {}
    for flag, path in given.items():
        for name, source in reads.items():
            if _same_or_inside(path, source):
                raise InputError(
                    f"{flag} {path}: expected a path other than the command's input {name} "
                    f"({source}), got the same file: writing it would destroy the input; "
                    f"choose another {flag}"
                )
        for other, earlier in seen.items():
            if _same_or_inside(path, earlier):
                raise InputError(
                    f"{flag} {path}: expected a path other than {other} ({earlier}), got the "
                    f"same file: one output would overwrite the other; choose another {flag}"
                )
        seen[flag] = path


def require_folder(target: MaybePath, make_dirs: bool, flag: str = "--output") -> None:
    """Before any work: the folder of ``target`` must exist unless ``make_dirs`` (``--mkdir``),
    the one rule of every command that writes a file (export and infer agree)."""
    from portanet.errors import InputError

    if target is None or str(target) == "-" or make_dirs:
        return
    folder = Path(target).parent
    if not folder.exists():
        raise InputError(
            f"{flag} {target}: expected an existing folder to write into, got {folder}, "
            f"which does not exist (pass --mkdir to create it)"
        )


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace ``target`` with ``data``."""
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sha256_of(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, or of every file of a directory (a SavedModel) in sorted
    relative-path order, each preceded by its relative path."""
    root = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for item in files:
        if root.is_dir():
            digest.update(str(item.relative_to(root)).encode() + b"\0")
        with open(item, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
