"""Models over 2 GB: weights written beside the graph as ONNX external data.

A single ``.onnx`` file is one protobuf message, which cannot exceed 2 GB; TensorFlow's
``GraphDef`` has the same limit, and freezing a large model copies every weight more than once.
So for a model whose weights pass the limit, portanet never puts its large weights into
either message:

* the model is traced with its large variables replaced by extra function inputs (Keras 3's
  ``StatelessScope``; a tf-keras model is frozen around them and their reads made inputs,
  :mod:`portanet.export.convert.unfrozen`), so the frozen graph — and the ONNX graph tf2onnx
  makes of it — takes them as inputs and stays small;
* :class:`ExternalWeights` then turns those ONNX inputs into initializers stored in one file
  beside the model, ``<model>.onnx.data``, written straight from the Keras variables (offsets
  aligned to 4 KiB, read 64 MiB at a time: never a second copy of a large weight), named by a
  relative path inside the output folder — the only form
  :mod:`portanet.runtime.guard` accepts;
* :class:`StagedModel` writes both files into a private folder beside the target, where
  ``onnx.checker``, onnxruntime and the parity gate read them by path, and publishes them by
  renaming (data first, then the graph), so no reader ever sees a graph without its data.

SavedModels only TensorFlow can load (a serving signature, no Keras model) are refused above
the limit. Export side only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Variables at least this large go to the external file (smaller ones stay in the graph).
EXTERNAL_MIN_BYTES = 1 << 20
#: Offsets in the data file are multiples of this (what onnx's own writer uses for mmap).
ALIGNMENT = 4096
#: Bytes read from a variable at a time while the data file is written.
CHUNK_BYTES = 64 << 20
#: Prefix of the traced inputs that stand for large weights.
INPUT_PREFIX = "portanet_external_"


def data_name(onnx_path: Path) -> str:
    """The external data file's name (relative to the model's folder) for ``onnx_path``."""
    return f"{onnx_path.name}.data"


@dataclass
class ExternalWeights:
    """Large variables traced as inputs, to be written as external initializers."""

    variables: list[Any]
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.names:
            self.names = [f"{INPUT_PREFIX}{i}" for i in range(len(self.variables))]

    @property
    def nbytes(self) -> int:
        """Bytes the external file will hold (before alignment)."""
        return sum(nbytes(v) for v in self.variables)

    def specs(self) -> list[tuple[str, tuple[int, ...], str]]:
        """(input name, shape, dtype) of each variable traced as an input."""
        return [
            (n, tuple(int(d) for d in v.shape), _dtype(v))
            for n, v in zip(self.names, self.variables, strict=False)
        ]

    def write(self, proto: Any, onnx_path: Path) -> Path:
        """Write the data file beside ``onnx_path`` and turn the graph inputs standing for the
        variables into initializers pointing into it; returns the data file's path."""
        import onnx

        target = onnx_path.with_name(data_name(onnx_path))
        by_name = dict(zip(self.names, self.variables, strict=False))
        inputs = {i.name: i for i in proto.graph.input}
        missing = [n for n in self.names if n not in inputs]
        if missing:
            raise ValueError(f"the converted graph lost the weight inputs {missing}")
        offset = 0
        with open(target, "wb") as handle:
            for name, shape, dtype in self.specs():
                padding = (-offset) % ALIGNMENT
                handle.write(b"\0" * padding)
                offset += padding
                length = 0
                for chunk in _chunks(by_name[name]):  # never a second copy of a large weight
                    handle.write(np.ascontiguousarray(chunk).data.cast("B"))
                    length += chunk.nbytes
                tensor = onnx.TensorProto(
                    name=name,
                    dims=list(shape),
                    data_type=onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                    data_location=onnx.TensorProto.EXTERNAL,
                )
                for key, value in (
                    ("location", target.name),
                    ("offset", str(offset)),
                    ("length", str(length)),
                ):
                    tensor.external_data.add(key=key, value=value)
                proto.graph.initializer.append(tensor)
                offset += length
        kept = [i for i in proto.graph.input if i.name not in by_name]
        del proto.graph.input[:]
        proto.graph.input.extend(kept)
        return target


def _dtype(variable: Any) -> str:
    return str(getattr(variable.dtype, "name", variable.dtype))


def nbytes(variable: Any) -> int:
    """Bytes of one variable's values (read from its shape and dtype, not its values)."""
    return int(np.prod(variable.shape)) * np.dtype(_dtype(variable)).itemsize


def _chunks(variable: Any, limit: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
    """A variable's values as numpy arrays of at most about ``limit`` bytes, in order
    (slices along the first axis, read one at a time)."""
    value = getattr(variable, "value", variable)
    if callable(value):  # tf.Variable (tf-keras): a method; Keras 3's is a property
        value = value()
    shape = tuple(int(d) for d in variable.shape)
    row_bytes = int(np.prod(shape[1:])) * np.dtype(_dtype(variable)).itemsize if shape else 0
    if not shape or row_bytes * shape[0] <= limit:
        yield np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        return
    step = max(1, limit // max(row_bytes, 1))
    for start in range(0, shape[0], step):
        part = value[start : start + step]
        yield np.asarray(part.numpy() if hasattr(part, "numpy") else part)


class StagedModel:
    """An ONNX graph and its external data, staged in a private folder beside ``target`` and
    published together (see the module docstring)."""

    def __init__(self, proto: Any, weights: ExternalWeights, target: Path) -> None:
        self.target = Path(target)
        self.folder = Path(
            tempfile.mkdtemp(prefix=".portanet-staged-", dir=self.target.parent or Path("."))
        )
        self.path = self.folder / self.target.name
        # Removed when published, discarded, garbage-collected or at exit, whichever is first:
        # a failing gate leaves nothing behind.
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, True)
        try:
            self.data = weights.write(proto, self.path)
            self.path.write_bytes(proto.SerializeToString())
        except BaseException:
            self.discard()
            raise

    def check(self) -> None:
        """``onnx.checker`` on the staged files (by path: the graph alone is under 2 GB)."""
        import onnx

        onnx.checker.check_model(str(self.path), full_check=True)

    def publish(self, proto: Any) -> Path:
        """Write ``proto`` (the graph, with its final metadata) and move both files into place:
        data first, then the graph. Returns the published graph's path."""
        self.path.write_bytes(proto.SerializeToString())
        os.replace(self.data, self.target.with_name(self.data.name))
        os.replace(self.path, self.target)
        self.discard()
        return self.target

    def discard(self) -> None:
        """Remove the staging folder and whatever is left in it."""
        self._cleanup()
