"""Files in, predictions out: streaming table readers and writers (pyarrow), and ``infer_file``.

Runtime side: imports numpy, pyarrow and :mod:`portanet.runtime`, never the export side.
One module per format (:mod:`.delimited`, :mod:`.parquet`, :mod:`.jsonl`, :mod:`.npy`,
:mod:`.npz`) with table, tensor and Ray entry points, one value policy (:mod:`.values`) and one
options object (:class:`InferOptions`). Readers yield :class:`~portanet.tables.types.Batch`
objects so files of any size stream with flat memory. The names below are imported on first
use, so that ``portanet.tables.options`` stays cheap to import for the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Batch": "portanet.tables.types",
    "Columns": "portanet.tables.types",
    "InferOptions": "portanet.tables.options",
    "InferResult": "portanet.tables.infer",
    "infer_file": "portanet.tables.infer",
    "iter_batches": "portanet.tables.readers",
    "iter_tensor_batches": "portanet.tables.readers",
    "open_writer": "portanet.tables.writers",
    "prediction_columns": "portanet.tables.outputs",
    "read_all": "portanet.tables.readers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'portanet.tables' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
