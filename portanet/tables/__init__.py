"""Files in, predictions out: streaming table readers and writers (pyarrow), and ``infer_file``.

Runtime side: imports numpy, pyarrow and :mod:`portanet.runtime`, never the export side.
Readers yield :class:`~portanet.tables.types.Batch` objects (a matrix of the model's features
plus any columns kept for the output) so files of any size stream with flat memory.
"""

from portanet.tables.infer import InferResult, infer_file
from portanet.tables.outputs import prediction_columns
from portanet.tables.readers import iter_batches, iter_tensor_batches, read_all
from portanet.tables.types import Batch, Columns
from portanet.tables.writers import open_writer

__all__ = [
    "Batch",
    "Columns",
    "InferResult",
    "infer_file",
    "iter_batches",
    "iter_tensor_batches",
    "open_writer",
    "prediction_columns",
    "read_all",
]
