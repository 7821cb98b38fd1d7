"""Tabular and array input/output for inference: streaming readers and atomic writers.

Readers yield :class:`~portanet.io.readers.Batch` objects (a float matrix of the model's features
plus any columns kept for the output) so files of any size stream with flat memory.
"""

from portanet.io.readers import Batch, iter_batches, read_all
from portanet.io.writers import open_writer

__all__ = ["Batch", "iter_batches", "open_writer", "read_all"]
