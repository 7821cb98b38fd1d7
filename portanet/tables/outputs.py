"""What ``infer`` writes: the prediction columns, kept input columns (never shadowing an output
column) and the checks an output path passes before any work starts."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portanet._files import check_writable, refuse_overwrite, require_folder
from portanet.errors import InputError
from portanet.runtime import Model
from portanet.runtime.model import as_matrix
from portanet.schema import BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER
from portanet.tables.arrow import int_array, names_array

#: errno values that mean the disk (or the process's file size limit) is full.
DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def _masked_ints(decided: Any) -> Any:
    """Class indices as an Arrow int64 array, null where the row had no decision (NaN)."""
    return int_array(np.ma.getdata(decided), np.ma.getmaskarray(decided))


def prediction_columns(
    model: Model, outputs: dict[str, np.ndarray], *, top_k: int | None = None, numeric: bool = False
) -> dict[str, Any]:
    """Output columns for a batch.

    * binary classifier: ``probability`` and ``label``;
    * multiclass: ``probability_<class>`` for every class and ``label`` — or, with ``top_k``,
      ``label``/``probability`` for the best class, then ``label_2``/``probability_2`` … up to k;
    * regression (or a model of unknown task) with one output: ``prediction`` (one value per
      row) or ``prediction_0`` … (one per output unit);
    * several outputs: one column per output value (``<output>`` or ``<output>_<i>``).

    ``label`` holds the class names stored at export (else the class index); a row whose
    probabilities hold NaN gets no label (null/empty), never class 0. ``numeric`` keeps labels
    as class indices, NaN when undecided (for NPY output).
    """
    schema = model.schema
    columns: dict[str, Any] = {}
    if schema.task in (BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER) and len(outputs) == 1:
        scores = next(iter(outputs.values()))
        flat = as_matrix(scores)
        decided = model.labels_for(scores)

        def label_column(indices: Any) -> Any:
            if numeric:
                return np.ma.filled(np.ma.asarray(indices).astype(np.float32), np.nan)
            if schema.labels:
                return _names(indices, schema.labels)
            return _masked_ints(indices)

        if schema.task == BINARY_CLASSIFIER:
            columns["probability"] = flat[:, 0]
            columns["label"] = label_column(decided)
            return columns
        if top_k:
            order = np.argsort(-np.nan_to_num(flat, nan=-np.inf), axis=1, kind="stable")
            assert decided is not None  # a classifier's scores always decide
            undecided = np.ma.getmaskarray(decided)
            for rank in range(min(top_k, flat.shape[1])):
                suffix = "" if rank == 0 else f"_{rank + 1}"
                indices = np.ma.MaskedArray(order[:, rank], mask=undecided)
                columns[f"label{suffix}"] = label_column(indices)
                columns[f"probability{suffix}"] = np.take_along_axis(
                    flat, order[:, rank : rank + 1], axis=1
                )[:, 0]
            return columns
        names = schema.labels or tuple(str(i) for i in range(flat.shape[1]))
        for index, label in enumerate(names[: flat.shape[1]]):
            columns[f"probability_{label}"] = flat[:, index]
        columns["label"] = label_column(decided)
        return columns
    if len(outputs) == 1:
        flat = as_matrix(next(iter(outputs.values())))
        if flat.shape[1] == 1:
            return {"prediction": flat[:, 0]}
        return {f"prediction_{i}": flat[:, i] for i in range(flat.shape[1])}
    for name, values in outputs.items():
        flat = as_matrix(values)
        if flat.shape[1] == 1:
            columns[name] = flat[:, 0]
        else:
            for index in range(flat.shape[1]):
                columns[f"{name}_{index}"] = flat[:, index]
    return columns


def _names(indices: Any, labels: Sequence[str]) -> Any:
    """Class names per row as an Arrow string array, null where undecided (no pandas)."""
    values = np.ma.getdata(indices).astype(np.int64)
    names = list(labels) + [str(i) for i in range(len(labels), int(values.max(initial=0)) + 1)]
    return names_array(values, names, np.ma.getmaskarray(indices))


def kept_names(keep_columns: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """Input column → output column for the kept columns: a mapping, or names where
    ``"label=true_label"`` keeps ``label`` under the name ``true_label``."""
    if isinstance(keep_columns, Mapping):
        return {str(k): str(v) for k, v in keep_columns.items()}
    pairs: dict[str, str] = {}
    for item in keep_columns:
        name, _, renamed = str(item).partition("=")
        name, renamed = name.strip(), renamed.strip() or name.strip()
        if not name:
            raise InputError(f"kept column {item!r}: expected NAME or NAME=NEW_NAME")
        pairs[name] = renamed
    return pairs


def check_clash(kept: Mapping[str, str], produced: Sequence[str]) -> None:
    """Refuse kept columns that would have the name of an output column (or of each other):
    the output would hold two columns of one name, one of them silently lost or misread."""
    targets = list(kept.values())
    clashes = sorted({t for t in targets if t in produced or targets.count(t) > 1})
    if clashes:
        sources = [s for s, t in kept.items() if t in clashes]
        hint = ", ".join(f"{s}={s}_input" for s in sources)
        raise InputError(
            f"kept columns {sources}: expected names unlike the output columns "
            f"{list(produced)} and each other, got {clashes} twice; keep them under "
            f"other names, e.g. {hint}"
        )


def check_output(
    output: str | os.PathLike[str] | None,
    sources: Sequence[str | os.PathLike[str]],
    *,
    make_dirs: bool,
    model: str | os.PathLike[str] | None = None,
) -> None:
    """Before any work: the output must not be one of the inputs, its folder must exist (or
    ``make_dirs``) and be writable."""
    if output is None or str(output) == "-":
        return
    target = Path(output)
    reads = {
        "SOURCE" if len(sources) == 1 else f"SOURCE #{i + 1}": s for i, s in enumerate(sources)
    }
    refuse_overwrite({"--output": target}, {"MODEL": model, **reads})
    require_folder(target, make_dirs)
    check_writable(target)
    if target.parent.is_dir():  # os.access says yes to root everywhere; try for real
        try:
            with tempfile.TemporaryFile(dir=target.parent):
                pass
        except OSError as exc:
            raise InputError(
                f"{target}: expected a folder this process may write, got "
                f"{target.parent} ({os.strerror(exc.errno or 0).lower()})"
            ) from exc


def disk_full(exc: OSError, path: str | os.PathLike[str] | None) -> InputError | None:
    """An :class:`InputError` naming ``path`` for a full disk (or file size limit), else None."""
    if exc.errno not in DISK_FULL:
        return None
    on_disk = path is not None and str(path) != "-"
    return InputError(
        f"{path if on_disk else '<stdout>'}: expected room to write the "
        f"predictions, got {os.strerror(exc.errno).lower()}"
        + (" (nothing was written)" if on_disk else "")
    )
