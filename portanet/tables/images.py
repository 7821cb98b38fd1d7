"""Image files (JPEG, PNG, WebP, …) as samples of a model's image input: which files a
source names, and batches of them prepared by the recipe recorded at export
(:mod:`portanet.images`, the one place preprocessing is done). Pillow lives in the ``images``
extra.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.images import Recipe, check_array_range, input_recipe, prepare_one, scale_array
from portanet.images.decode import pillow
from portanet.schema import TensorSpec
from portanet.tables.arrow import string_array
from portanet.tables.types import Batch, Rejected, slices

#: Suffixes read as images (what Pillow decodes; the issue's JPEG/PNG/WebP and a few more).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_GLOB_CHARACTERS = set("*?[")
FLOAT32 = np.dtype(np.float32)


def is_image_source(sources: Sequence[str | os.PathLike[str]]) -> bool:
    """Whether ``sources`` name images: a folder, a glob pattern or image files."""
    for source in sources:
        text = str(source)
        if text == "-":
            return False
        path = Path(text)
        if path.is_dir() or _GLOB_CHARACTERS & set(text):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            return False
    return bool(sources)


def image_paths(sources: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """Every image file named by ``sources`` with the name written in the output: a folder's
    images (recursively, sorted; names relative to the folder), a glob's matches (sorted) and
    files as given. A source that names nothing is an error."""
    return image_listing(sources)[0]


def _hidden(path: Path, root: Path) -> bool:
    """A dotfile, a macOS ``._*`` resource fork, or anything inside a hidden folder."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def image_listing(
    sources: Sequence[str | os.PathLike[str]],
) -> tuple[list[tuple[Path, str]], int]:
    """:func:`image_paths`, and how many other (non-image, not hidden) files the folders held,
    which are skipped. Hidden files and folders (``.*``, ``._*``) are skipped silently."""
    found: list[tuple[Path, str]] = []
    others = 0
    for source in sources:
        text = str(source)
        path = Path(text)
        if path.is_dir():
            present = [p for p in path.rglob("*") if p.is_file() and not _hidden(p, path)]
            files = sorted(p for p in present if p.suffix.lower() in IMAGE_SUFFIXES)
            others += len(present) - len(files)
            if not files:
                kinds = ", ".join(sorted(IMAGE_SUFFIXES))
                raise InputError(f"{path}: expected image files ({kinds}) in the folder, got none")
            found.extend((p, p.relative_to(path).as_posix()) for p in files)
        elif _GLOB_CHARACTERS & set(text) and not path.exists():
            matches = sorted(
                Path(m)
                for m in glob.glob(text, recursive=True)
                if Path(m).suffix.lower() in IMAGE_SUFFIXES and Path(m).is_file()
            )
            if not matches:
                raise InputError(f"{text}: expected the pattern to match image files, got none")
            found.extend((p, str(p)) for p in matches)
        else:
            if not path.is_file():
                raise InputError(f"{path}: no such file")
            found.append((path, text))
    return found, others


def image_input(
    specs: Sequence[TensorSpec],
    recipes: Mapping[str, Recipe],
    override: dict[str, Any] | None,
    origin: str,
) -> tuple[TensorSpec, Recipe]:
    """The model's image input and its recipe (:func:`portanet.images.input_recipe`)."""
    return input_recipe(specs, recipes, override, origin)


def decode(path: Path, recipe: Recipe, dtype: Any = np.float32) -> np.ndarray:
    """One image file as a sample of the model's input, prepared as the recipe says."""
    return prepare_one(path, recipe, dtype, str(path))


def image_batches(
    files: Sequence[tuple[Path, str]],
    spec: TensorSpec,
    recipe: Recipe,
    batch_rows: int,
    threads: int = 4,
    skip: bool = False,
) -> Iterator[Batch]:
    """Batches of decoded images for ``spec`` with a ``file`` column (the names of
    :func:`image_paths`); images are decoded by ``threads`` threads (Pillow releases the GIL).
    With ``skip``, a file that cannot be decoded is left out and listed in ``Batch.rejected``
    with the reason, instead of failing the run."""
    pillow()
    dtype = spec.numpy_dtype

    def attempt(item: tuple[Path, str]) -> np.ndarray | InputError:
        try:
            return decode(item[0], recipe, dtype)
        except InputError as exc:
            if not skip:
                raise
            return exc

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for start, stop in slices(len(files), batch_rows):
            chunk = files[start:stop]
            results = list(pool.map(attempt, chunk))
            rejected = [
                Rejected(str(path), "file", 0, str(result).removeprefix(f"{path}: "))
                for (path, _), result in zip(chunk, results, strict=True)
                if isinstance(result, InputError)
            ]
            good = [
                (name, result)
                for (_, name), result in zip(chunk, results, strict=True)
                if not isinstance(result, InputError)
            ]
            shape = (0, *[d if isinstance(d, int) else 1 for d in spec.shape[1:]])
            array = np.stack([r for _, r in good]) if good else np.empty(shape, dtype=dtype)
            names = string_array([name for name, _ in good])
            yield Batch(array, {"file": names}, start, {spec.name: array}, rejected)


def checked_arrays(
    batches: Iterator[Batch],
    recipes: Mapping[str, Recipe],
    origin: str,
    array_range: tuple[float, float] | None = None,
) -> Iterator[Batch]:
    """Batches of arrays given directly (NPY, NPZ, JSON) to image inputs, checked against the
    recorded value range (:func:`portanet.images.check_array_range`) — or, with
    ``array_range`` (raw pixels, e.g. 0..255), scaled as image files are."""
    for batch in batches:
        feeds = batch.feeds
        if feeds is None:
            yield batch
            continue
        for name, recipe in recipes.items():
            if name not in feeds:
                continue
            where = f"{origin}: rows {batch.first_row}..{batch.first_row + batch.rows - 1}"
            if array_range is not None:
                scaled = scale_array(feeds[name], recipe, array_range, feeds[name].dtype, where)
                if feeds[name] is batch.features:
                    batch.features = scaled
                feeds[name] = scaled
            else:
                check_array_range(feeds[name], recipe, where)
        yield batch
