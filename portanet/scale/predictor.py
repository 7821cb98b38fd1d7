"""The Ray actor that predicts Arrow batches, and :func:`predict_dataset` that maps it over a
``ray.data.Dataset``.

Each actor loads the model once, from bytes held in Ray's object store, with as many
onnxruntime threads as its CPU share; every batch becomes one ``Model.run`` call, and its
prediction columns are the local engine's (:func:`portanet.tables.infer.prediction_columns`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from portanet.errors import InputError, PortanetError
from portanet.runtime import load
from portanet.scale.ledger import report
from portanet.tables.files import filesystem
from portanet.tables.options import RAY_ROWS_PER_BATCH
from portanet.tables.outputs import prediction_columns
from portanet.tables.types import ON_ERROR, Columns, select_columns
from portanet.tables.values import (
    ERROR_COLUMN,
    FILE_COLUMN,
    INTERNAL_COLUMNS,
    ROW_COLUMN,
    screen,
    table_rows,
)


@dataclass(frozen=True)
class Workers:
    """How many predictor actors, and the CPUs each reserves (its onnxruntime threads follow)."""

    min_size: int
    max_size: int
    cpus: float

    def __post_init__(self) -> None:
        if self.min_size < 1 or self.max_size < self.min_size:
            raise InputError(
                f"workers: expected 1 <= min <= max, got min {self.min_size}, max {self.max_size}"
            )
        if self.cpus <= 0:
            raise InputError(f"CPUs per worker: expected a positive number, got {self.cpus}")

    @property
    def threads(self) -> int:
        """onnxruntime intra-op threads for one actor: its CPU share, at least one."""
        return max(1, int(round(self.cpus)))


class Predictor:
    """Callable class for ``Dataset.map_batches``: a pyarrow Table in, predictions out.

    ``on_error="fail"`` raises :class:`InputError` naming the file and line (or row) of the
    first bad value; ``"skip"`` writes bad rows with their reason as Parquet files under
    ``rejected_dir`` (named by their content, so a retried batch rewrites the same file) and
    predicts the rest.
    """

    def __init__(
        self,
        model: Any,
        *,
        keep: Sequence[str] = (),
        on_error: str = "fail",
        allow_nan: bool = False,
        providers: str | list[str] = "cpu",
        threads: int = 1,
        files: Sequence[tuple[str, str]] = (),
        rejected_dir: str | None = None,
        ledger: Any = None,
        positional: bool = False,
    ) -> None:
        import ray

        if isinstance(model, (tuple, list)) and len(model) == 1:
            model = model[0]  # a reference (or the bytes) handed over in a tuple
        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        self.model = load(model, providers=providers, threads=threads)
        spec = self.model.schema.inputs[0]
        self.input_name = spec.name
        self.dtype = spec.numpy_dtype
        self.columns = Columns(
            self.model.feature_names,
            cast(int, spec.shape[1]),  # a table model: checked fixed
            tuple(keep),
            spec.numpy_dtype,
            positional=positional,
        )
        self.keep = list(keep)
        self.on_error = on_error
        self.allow_nan = allow_nan
        self.files = list(files)
        self.rejected_dir = rejected_dir
        self.ledger = ledger

    def __call__(self, table: Any) -> Any:
        """Predict one batch (a ``pyarrow.Table``); returns kept + prediction columns."""
        try:
            return self._predict(table)
        except PortanetError as exc:
            report(self.ledger, exc)
            raise

    def _predict(self, table: Any) -> Any:
        import pyarrow as pa

        names = [n for n in table.column_names if n not in INTERNAL_COLUMNS]
        origin = self._origin(table)
        features, keep = select_columns(names, self.columns, origin)
        numbers = (
            np.asarray(table.column(ROW_COLUMN).to_numpy())
            if ROW_COLUMN in table.column_names
            else np.arange(1, table.num_rows + 1)
        )
        rows = table_rows(table, features, keep, origin, numbers, 0, "row")
        if (
            ERROR_COLUMN in table.column_names
            and table.column(ERROR_COLUMN).null_count != table.num_rows
        ):
            found = table.column(ERROR_COLUMN).to_pylist()
            rows.reasons = (
                found
                if rows.reasons is None
                else [a or b for a, b in zip(found, rows.reasons, strict=True)]
            )
        matrix, reasons = screen(rows, features, self.dtype, self.allow_nan)
        rejected = 0
        if reasons is not None and any(r is not None for r in reasons):
            bad = np.array([r is not None for r in reasons], dtype=bool)
            if self.on_error == "fail":
                first = int(np.argmax(bad))
                raise InputError(f"{self._where(table, first)}, {reasons[first]}")
            picked = np.flatnonzero(bad)
            rejected = len(picked)
            self._reject(table, picked, features, reasons)
            good = ~bad
            matrix = np.ascontiguousarray(matrix[good])
            table = table.filter(pa.array(good))
        outputs = self.model.run({self.input_name: matrix}, allow_nan=True)
        columns = {k: table.column(k) for k in keep}
        for name, array in prediction_columns(self.model, outputs).items():
            columns[name] = pa.array(array)
        if self.ledger is not None:
            self._count(table, len(matrix), rejected)
        return pa.table(columns)

    def _origin(self, table: Any) -> str:
        if FILE_COLUMN in table.column_names and table.num_rows and self.files:
            return self.files[int(table.column(FILE_COLUMN)[0].as_py())][0]
        if "path" in table.column_names and table.num_rows:
            return str(table.column("path")[0].as_py())
        return "dataset"

    def _where(self, table: Any, row: int) -> str:
        """``FILE: line N`` for ``row`` (else its kept values, else its batch position)."""
        origin, detail = self._location(table, row)
        return f"{origin}: {detail}"

    def _location(self, table: Any, row: int) -> tuple[str, str]:
        names = table.column_names
        if FILE_COLUMN in names and ROW_COLUMN in names and self.files:
            path, word = self.files[int(table.column(FILE_COLUMN)[row].as_py())]
            return path, f"{word} {int(table.column(ROW_COLUMN)[row].as_py())}"
        origin = str(table.column("path")[row].as_py()) if "path" in names else "dataset"
        if self.keep:
            shown = ", ".join(f"{k}={table.column(k)[row].as_py()!r}" for k in self.keep)
            return origin, f"the row with {shown}"
        return origin, f"row {row + 1} of a batch of {table.num_rows}"

    def _numbered(self, table: Any, row: int) -> tuple[str | None, int | None]:
        """(``line``/``row``/``record``, its number in its file) of ``row``; (None, None) for
        rows without a file position (a dataset given to :func:`predict_dataset`)."""
        names = table.column_names
        if FILE_COLUMN in names and ROW_COLUMN in names and self.files:
            word = self.files[int(table.column(FILE_COLUMN)[row].as_py())][1]
            return word, int(table.column(ROW_COLUMN)[row].as_py())
        return None, None

    def _reject(
        self, table: Any, rows: np.ndarray, features: Sequence[str], reasons: Sequence[Any]
    ) -> None:
        """Write the bad rows and their reasons to one Parquet file named by its content."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.rejected_dir is None:
            return
        take = pa.array(rows)
        located = [self._numbered(table, int(r)) for r in rows]
        # The local engine's columns (file, unit, number, reason): a CSV line counts from 1,
        # a Parquet row is a 0-based index, and the unit says which a number is.
        columns: dict[str, Any] = {
            "file": pa.array([self._location(table, int(r))[0] for r in rows], pa.string()),
            "unit": pa.array([unit for unit, _ in located], pa.string()),
            "number": pa.array([number for _, number in located], pa.int64()),
            "reason": pa.array([reasons[int(r)] for r in rows], pa.string()),
        }
        for k in self.keep:
            columns[k] = table.column(k).take(take)
        for name in features:
            columns[name] = table.column(name).take(take)
        rejected = pa.table(columns)
        sink = pa.BufferOutputStream()
        pq.write_table(rejected, sink)
        data = sink.getvalue()
        digest = hashlib.sha256(data.to_pybytes()).hexdigest()[:32]
        fs, inner, _ = filesystem(self.rejected_dir)
        final = f"{inner.rstrip('/')}/rejected-{digest}.parquet"
        partial = f"{final}.partial"
        with fs.open_output_stream(partial) as out:
            out.write(data)
        fs.move(partial, final)  # a retried batch writes the same name: no row twice

    def _count(self, table: Any, predicted: int, rejected: int) -> None:
        import ray

        if FILE_COLUMN in table.column_names and table.num_rows:
            key = (
                int(table.column(FILE_COLUMN)[0].as_py()),
                int(table.column(ROW_COLUMN)[0].as_py()),
            )
        else:
            key = None
        ray.get(self.ledger.add.remote(key, predicted, rejected))


def predict_dataset(
    dataset: Any,
    model: Any,
    *,
    keep_columns: Sequence[str] = (),
    workers: Workers | None = None,
    rows_per_batch: int = RAY_ROWS_PER_BATCH,
    on_error: str = "fail",
    allow_nan: bool = False,
    providers: str | list[str] = "cpu",
    threads: int | None = None,
    rejected_dir: str | None = None,
    files: Sequence[tuple[str, str]] = (),
    ledger: Any = None,
    positional: bool = False,
    fused: bool = False,
) -> Any:
    """A ``ray.data.Dataset`` of predictions for ``dataset``: the ``keep_columns`` beside the
    local engine's prediction columns (``probability``/``label`` for a binary classifier, ...).

    ``model``: ONNX bytes, a path readable here, or an ``ObjectRef`` to the bytes (each actor
    loads it once). Feature columns are found by the model's feature names; numbers of any
    type and numeric text are accepted. ``workers``: a fixed or autoscaling actor pool and the
    CPUs each reserves (default: one actor, one CPU). ``fused=True`` predicts in Ray tasks of
    one CPU instead of actors (each worker process keeps the loaded model), which Ray Data fuses
    with the read and write tasks: no actor start-up and no object-store hop between reading and
    predicting (the Ray engine's default). ``on_error``: ``"fail"`` or ``"skip"``
    (bad rows written to ``rejected_dir``, which must exist). Call it inside a connected Ray
    session; nothing runs until the dataset is consumed.
    """
    import ray
    from ray.data import ActorPoolStrategy

    if on_error not in ON_ERROR:
        raise InputError(f"on_error: expected one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if on_error == "skip" and rejected_dir is None:
        raise InputError("on_error='skip' needs rejected_dir, the folder for the bad rows")
    if rows_per_batch < 1:
        raise InputError(f"rows per batch: expected a positive number, got {rows_per_batch}")
    pool = workers or Workers(1, 1, 1.0)
    if not isinstance(model, ray.ObjectRef):
        if not isinstance(model, (bytes, bytearray)):
            with open(model, "rb") as handle:
                model = handle.read()
        load(bytes(model), providers="cpu", threads=1)  # a bad model fails here, not in actors
        model = ray.put(bytes(model))
    compute = (
        ActorPoolStrategy(size=pool.min_size)
        if pool.min_size == pool.max_size
        else ActorPoolStrategy(min_size=pool.min_size, max_size=pool.max_size)
    )
    kwargs = {
        "keep": tuple(keep_columns),
        "on_error": on_error,
        "allow_nan": allow_nan,
        "providers": providers,
        "threads": threads or pool.threads,
        "files": tuple(files),
        "rejected_dir": rejected_dir,
        "ledger": ledger,
        "positional": positional,
    }
    if fused:
        kwargs["threads"] = threads or 1
        return dataset.map_batches(
            predict_in_task,
            batch_size=rows_per_batch,
            batch_format="pyarrow",
            num_cpus=1,
            fn_kwargs={"model": (model,), "settings": kwargs},
        )
    return dataset.map_batches(
        Predictor,
        batch_size=rows_per_batch,
        batch_format="pyarrow",
        compute=compute,
        num_cpus=pool.cpus,
        # The reference goes in a tuple: the actor fetches it itself, so
        # a restarted actor does not depend on Ray's argument pinning.
        fn_constructor_args=((model,),),
        fn_constructor_kwargs=kwargs,
    )


#: Predictors loaded in this worker process, by model and settings (fused task mode).
_LOADED: dict[tuple[str, str], Predictor] = {}


def cached_predictor(model: tuple[Any, ...], settings: dict[str, Any]) -> Predictor:
    """This worker process's :class:`Predictor` for ``model`` (a 1-tuple holding an
    ``ObjectRef`` to the ONNX bytes, or the bytes) and ``settings``: loaded on first use,
    kept for the next batches and tasks of the run."""
    import ray

    ref = model[0]
    key = (
        ref.hex() if isinstance(ref, ray.ObjectRef) else hashlib.sha256(ref).hexdigest(),
        repr(sorted((k, v) for k, v in settings.items() if k != "ledger")),
    )
    predictor = _LOADED.get(key)
    if predictor is None:
        if len(_LOADED) >= 4:
            _LOADED.clear()
        predictor = _LOADED[key] = Predictor(model, **settings)
    return predictor


def predict_in_task(table: Any, *, model: tuple[Any, ...], settings: dict[str, Any]) -> Any:
    """``map_batches`` function of the fused mode: the process's :class:`Predictor` for this
    model (loaded on its first batch, kept for the next ones) applied to ``table``."""
    return cached_predictor(model, settings)(table)
