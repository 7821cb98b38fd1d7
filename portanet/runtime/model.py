"""The :class:`Model`: an onnxruntime session with schema-checked input (no TensorFlow).

Create one with :func:`portanet.load`::

    >>> import portanet
    >>> model = portanet.load("models/pima_mlp.onnx")
    >>> model.predict([[6, 148, 72, 35, 0, 33.6, 0.627, 50]])        # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from portanet import schema as meta
from portanet.errors import InputError, name_mismatch
from portanet.runtime.execution import Executor, fixed_batch_of
from portanet.runtime.inputs import (
    check_finite,
    check_vocabulary,
    coerce_array,
    columns_of,
    stack_features,
)
from portanet.schema import (
    BINARY_CLASSIFIER,
    MULTICLASS_CLASSIFIER,
    ModelSchema,
    TensorSpec,
    dtype_from_ort,
)

log = logging.getLogger("portanet")


def as_matrix(values: np.ndarray) -> np.ndarray:
    """View an output as rows × values (works for empty batches too)."""
    values = np.asarray(values)
    if values.ndim == 0:
        return values.reshape(1, 1)
    return values.reshape(values.shape[0], int(np.prod(values.shape[1:], dtype=np.int64)))


def _free_batch(spec: TensorSpec) -> TensorSpec:
    """The spec with its first axis dynamic (for a model whose batch size is fixed)."""
    return TensorSpec(spec.name, (None, *spec.shape[1:]), spec.dtype)


def _spec_from_arg(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in (arg.shape or []))
    return TensorSpec(arg.name, shape, dtype_from_ort(arg.type))


class Model:
    """An ONNX model ready for inference. Create it with :func:`load`.

    Thread-safe: one instance may serve many threads at once. ``chunk_rows`` (``None``: sized
    by the bytes a row weighs, see :func:`portanet.runtime.execution.chunk_rows_for`) is how
    many rows of a large batch go to onnxruntime at a time.
    """

    def __init__(
        self, session: ort.InferenceSession, path: Path | None, *, chunk_rows: int | None = None
    ) -> None:
        self._session = session
        self.path = path
        self.chunk_rows = chunk_rows
        origin = str(path) if path else "model"
        raw = dict(session.get_modelmeta().custom_metadata_map)
        #: Decoded metadata: ``portanet.*`` keys as JSON values, others as strings.
        self.metadata: dict[str, Any] = meta.decode(raw, origin=origin)
        inputs = tuple(_spec_from_arg(a) for a in session.get_inputs())
        outputs = tuple(_spec_from_arg(a) for a in session.get_outputs())
        stored = meta.schema_from(self.metadata)
        #: Inputs, outputs, feature names and task; tensors come from the ONNX graph itself.
        self.schema: ModelSchema = (
            stored.with_io(inputs, outputs) if stored else ModelSchema(inputs, outputs)
        )
        self._input_names = [t.name for t in inputs]
        self._output_names = [t.name for t in outputs]
        features = self.schema.feature_names
        single = inputs[0] if len(inputs) == 1 else None
        if (
            single is not None
            and features
            and (single.rank != 2 or single.shape[1] not in (None, len(features)))
        ):
            features = None  # names that do not describe a 2-D input are ignored
        self._features = features
        #: Batch size fixed by the graph (e.g. exported with batch size 1): any number of rows
        #: is accepted and run in chunks of exactly this size.
        self.fixed_batch = fixed_batch_of([s.shape for s in inputs])
        self._input_specs = tuple(_free_batch(s) for s in inputs) if self.fixed_batch else inputs
        # Fast path for the common case: one input, given as an ndarray of the right dtype.
        #: Vocabulary sizes of integer-id inputs (range-checked before onnxruntime sees them).
        self._vocabulary = {
            n: v for n, v in self.schema.vocabulary.items() if n in self._input_names
        }
        self._fast = (
            self._input_specs[0]
            if single is not None and single.dtype != "str" and not self._vocabulary
            else None
        )
        self._fast_dtype = self._fast.numpy_dtype if self._fast is not None else None
        self._fixed_dims = (
            tuple((axis, dim) for axis, dim in enumerate(self._fast.shape) if isinstance(dim, int))
            if self._fast is not None
            else ()
        )
        float_inputs = (
            {s.name for s in inputs if s.numpy_dtype.kind == "f"}
            if all(s.dtype != "str" for s in inputs)
            else set()
        )
        self._float_inputs = float_inputs
        self._executor = Executor(
            session,
            self._input_names,
            self._output_names,
            float_inputs,
            origin,
            fixed_batch=self.fixed_batch,
        )
        self._slots = self._executor.slots

    @property
    def providers(self) -> list[str]:
        """The execution providers onnxruntime really uses, in priority order."""
        return list(self._session.get_providers())

    @property
    def session(self) -> ort.InferenceSession:
        """The underlying onnxruntime session (for what portanet does not wrap)."""
        return self._session

    @property
    def input_names(self) -> list[str]:
        """Names of the model's inputs."""
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        """Names of the model's outputs."""
        return list(self._output_names)

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """Column names of a tabular model's single input, from the export metadata."""
        return self._features

    def prepare(self, x: Any, *, allow_nan: bool = False) -> dict[str, np.ndarray]:
        """Validate ``x`` exactly as :meth:`predict` does and return the feeds onnxruntime will
        receive (what a server checks before a request joins a batch)."""
        feeds = self._coerce(x)
        if not allow_nan:
            for name in self._float_inputs:
                check_finite(name, feeds[name])
        return feeds

    def _coerce(self, x: Any) -> dict[str, np.ndarray]:
        """Everything but the NaN/Inf check (done chunk by chunk, while data is in cache),
        ids of Embedding inputs included."""
        feeds = self._coerce_inputs(x)
        for name, size in self._vocabulary.items():
            check_vocabulary(name, feeds[name], size)
        return feeds

    def _coerce_inputs(self, x: Any) -> dict[str, np.ndarray]:
        specs = self._input_specs
        if len(specs) == 1:
            spec = specs[0]
            columns = columns_of(x)
            if columns is not None and not (len(columns) == 1 and spec.name in columns):
                if not self._features:
                    raise InputError(
                        f"input {spec.name!r}: named columns need feature names in the model "
                        f"metadata, and this model has none; pass an array of shape "
                        f"{tuple(spec.shape)} or a dict {{{spec.name!r}: array}}"
                    )
                return {
                    spec.name: coerce_array(
                        stack_features(columns, self._features, spec), spec, allow_nan=True
                    )
                }
            if columns is not None:
                x = columns[spec.name]
            return {spec.name: coerce_array(x, spec, allow_nan=True)}
        columns = columns_of(x)
        if columns is None:
            raise InputError(
                f"expected a dict of the inputs {self._input_names}, got {type(x).__name__}"
            )
        mismatch = name_mismatch(self._input_names, list(columns))
        if mismatch:
            raise InputError(
                f"expected the inputs {self._input_names}, got {list(columns)} ({mismatch})"
            )
        feeds = {s.name: coerce_array(columns[s.name], s, allow_nan=True) for s in specs}
        sizes = {a.shape[0] for a in feeds.values() if a.ndim}
        if len(sizes) > 1:
            raise InputError(f"expected one batch size for all inputs, got {sorted(sizes)}")
        return feeds

    def _fast_feeds(self, x: Any) -> dict[str, np.ndarray] | None:
        """Feeds for an ndarray that already fits the single input exactly, else ``None``."""
        spec = self._fast
        if (
            spec is None
            or type(x) is not np.ndarray
            or x.dtype != self._fast_dtype
            or x.ndim != spec.rank
            or not x.flags.c_contiguous
        ):
            return None
        shape = x.shape
        for axis, dim in self._fixed_dims:
            if shape[axis] != dim:
                return None
        return {spec.name: x}

    def run(self, feeds: Any, *, allow_nan: bool = False) -> dict[str, np.ndarray]:
        """Run the model and return every output by name. Large batches run in chunks."""
        return dict(zip(self._output_names, self._outputs(feeds, allow_nan), strict=False))

    def predict(self, x: Any, *, allow_nan: bool = False) -> np.ndarray | dict[str, np.ndarray]:
        """Predict: the output array of a single-output model, else a dict name → array."""
        if type(x) is np.ndarray and x.dtype is self._fast_dtype:
            # A shape this thread has run before: its bound buffers, no conversions.
            slot = self._slots.table.get(x.shape)
            if slot is not None:
                result = slot(x, allow_nan)
                if result is not None:
                    return result
        results = self._outputs(x, allow_nan)
        if len(results) == 1:
            return results[0]
        return dict(zip(self._output_names, results, strict=False))

    def _outputs(self, x: Any, allow_nan: bool) -> list[np.ndarray]:
        checked = self._fast_feeds(x)
        if checked is None:
            return self._execute(self._coerce(x), allow_nan)
        results = self._execute(checked, allow_nan)
        self._executor.remember(x, results)
        return results

    def _execute(self, feeds: dict[str, np.ndarray], allow_nan: bool) -> list[np.ndarray]:
        """Check NaN/Inf chunk by chunk and run (see :mod:`portanet.runtime.execution`)."""
        rows = next(iter(feeds.values())).shape[0] if feeds else 0
        if rows == 0:
            empty = self._empty_outputs()
            return [empty[n] for n in self._output_names]
        return self._executor.execute(feeds, allow_nan, self.chunk_rows)

    def _empty_outputs(self) -> dict[str, np.ndarray]:
        return {
            s.name: np.empty(
                (0, *[d if isinstance(d, int) else 0 for d in s.shape[1:]]),
                dtype=s.numpy_dtype if s.dtype != "str" else object,
            )
            for s in self.schema.outputs
        }

    @property
    def image_recipes(self) -> dict[str, Any]:
        """Image input name → the preprocessing :class:`portanet.images.Recipe` recorded at
        export (files from before recipes: what ``infer`` always did with them)."""
        from portanet.images import recipes_of

        return recipes_of(self.metadata, self.schema.images)

    def prepare_images(
        self, images: Any, *, image_range: str | None = None, threads: int = 1
    ) -> np.ndarray:
        """Image files, encoded bytes (JPEG, PNG, …) or PIL images — one or a list — as the
        input batch of this model's image input, prepared by the recorded recipe
        (``image_range`` — ``0..1``, ``-1..1``, ``tf``, … — overrides its value range)."""
        from portanet.images import input_recipe, prepare, value_fields

        override = value_fields(image_range) if image_range else None
        origin = str(self.path or "model")
        spec, recipe = input_recipe(self.schema.inputs, self.image_recipes, override, origin)
        return prepare(images, recipe, dtype=spec.numpy_dtype, threads=threads)

    def predict_images(
        self, images: Any, *, image_range: str | None = None, threads: int = 1
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Predict from image files, encoded bytes or PIL images (one or a list) with the
        preprocessing recorded at export — what :meth:`predict` returns; class names follow
        from :meth:`label_names_for`::

            >>> probabilities = model.predict_images(["cat.jpg", "dog.png"])  # doctest: +SKIP
            >>> model.label_names_for(probabilities)                          # doctest: +SKIP
        """
        return self.predict(self.prepare_images(images, image_range=image_range, threads=threads))

    def labels_for(self, probabilities: np.ndarray) -> np.ndarray | None:
        """Class decisions (class indices) for a classifier's output, or ``None`` for other
        tasks: 0/1 at the stored threshold for a binary classifier, the argmax otherwise.

        A row whose probabilities hold NaN (possible with ``allow_nan=True``) gets no class:
        the result is then a :class:`numpy.ma.MaskedArray` with that row masked, never class 0.
        """
        schema = self.schema
        if schema.task not in (BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER):
            return None
        flat = as_matrix(probabilities)
        undecided = np.isnan(flat).any(axis=1) if flat.dtype.kind == "f" else None
        with np.errstate(invalid="ignore"):
            if schema.task == BINARY_CLASSIFIER:
                threshold = schema.threshold if schema.threshold is not None else 0.5
                decided = (flat[:, 0] >= threshold).astype(np.int64)
            else:
                decided = flat.argmax(axis=1) if flat.shape[1] else np.zeros(len(flat), np.int64)
        if undecided is not None and undecided.any():
            return np.ma.MaskedArray(decided, mask=undecided)
        return decided

    def label_names_for(self, probabilities: np.ndarray) -> np.ndarray | None:
        """Class names for a classifier's output (the ``labels`` stored at export, else the
        class index as text), ``None`` where a row holds NaN; ``None`` for other tasks."""
        decided = self.labels_for(probabilities)
        if decided is None:
            return None
        names = self.schema.labels
        mask = np.ma.getmaskarray(decided)
        values = np.ma.getdata(decided)
        if names is None and self.schema.task == BINARY_CLASSIFIER:
            names = ("0", "1")
        out = np.empty(len(values), dtype=object)
        for index, (value, masked) in enumerate(zip(values.tolist(), mask.tolist(), strict=False)):
            out[index] = (
                None if masked else (names[value] if names and value < len(names) else str(value))
            )
        return out

    def __repr__(self) -> str:
        name = self.path.name if self.path else "<bytes>"
        return f"Model({name!r}, inputs={self._input_names}, outputs={self._output_names})"
