"""``InferOptions``: everything a batch inference run may be told, with its defaults defined
once (the ``infer`` command builds one; :func:`portanet.tables.infer_file` and
:func:`portanet.scale.infer_ray` take it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from portanet.errors import InputError
from portanet.tables.types import ON_ERROR

if TYPE_CHECKING:
    from portanet.tables.values import ValuePolicy


#: Rows read, predicted and written at a time by the local engine.
LOCAL_ROWS_PER_BATCH = 65536
#: Rows per predictor call on Ray: larger, because every Ray Data batch also pays for
#: scheduling and object-store transfers (262,144 measured ~20% faster than 65,536 on 8M rows;
#: benchmarks/ray_engine.py).
RAY_ROWS_PER_BATCH = 262144
#: Input bytes per batch for tensor and image inputs (rows per batch shrink for heavy rows:
#: 27 images of 224×224×3 float32). A model's activations multiply it — 7.6× for a small CNN
#: measured in tests/tables/test_images.py, which is why this is not larger.
DEFAULT_BATCH_BYTES = 16 << 20
ENGINES = ("local", "ray")
#: Files the Ray engine writes into its output folder.
RAY_OUTPUT_FORMATS = ("parquet", "csv", "jsonl")


@dataclass(frozen=True)
class InferOptions:
    """How to run batch inference.

    ``rows_per_batch``: most rows read, predicted and written at a time (``None``: the engine's
    default, :data:`LOCAL_ROWS_PER_BATCH` or :data:`RAY_ROWS_PER_BATCH`); ``max_batch_bytes``
    caps the input bytes of a batch of tensors or images. ``keep_columns``: input columns
    copied to the output (``"name=new"`` renames one). ``allow_nan`` and ``on_error``
    (``"fail"`` or ``"skip"``): the value policy (:mod:`portanet.tables.values`).
    ``stdin_format``: the format of ``-``. ``positional``: take a model without feature names'
    columns in file order. ``top_k``: the k best classes of a multiclass model.
    ``image_range``/``channel_order`` override the image preprocessing recorded at export.
    ``array_range`` (``"0..255"``): arrays given directly to an image input hold raw pixels,
    scaled as image files are (without it they are refused when outside the recorded range).
    ``make_dirs``: create the output's folder. Ray only: ``address`` (``None`` starts a private
    cluster), ``workers`` (N or (MIN, MAX)), ``cpus_per_worker``, ``output_format``,
    ``providers``, ``threads``, ``sha256`` of the model, ``debug`` (show Ray's own logs).
    """

    engine: str = "local"
    rows_per_batch: int | None = None
    max_batch_bytes: int = DEFAULT_BATCH_BYTES
    keep_columns: tuple[str, ...] | Mapping[str, str] = ()
    allow_nan: bool = False
    on_error: str = "fail"
    stdin_format: str = "csv"
    positional: bool = False
    top_k: int | None = None
    image_range: str | None = None
    channel_order: str | None = None
    array_range: str | None = None
    make_dirs: bool = False
    address: str | None = None
    workers: int | tuple[int, int] | None = None
    cpus_per_worker: float | None = None
    output_format: str = "parquet"
    providers: str | list[str] = "cpu"
    threads: int | None = None
    sha256: str | None = None
    debug: bool = False
    rejected_dir: str | None = field(default=None)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"engine: expected one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.on_error not in ON_ERROR:
            raise InputError(
                f"--on-error: expected one of {', '.join(ON_ERROR)}, got {self.on_error!r}"
            )
        if self.rows_per_batch is not None and self.rows_per_batch < 1:
            raise InputError(
                f"rows per batch: expected a positive number, got {self.rows_per_batch}"
            )
        if self.max_batch_bytes < 1:
            raise InputError(f"batch bytes: expected a positive number, got {self.max_batch_bytes}")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top k: expected a positive number of classes, got {self.top_k}")
        if self.output_format not in RAY_OUTPUT_FORMATS:
            raise InputError(
                f"output format: expected one of {', '.join(RAY_OUTPUT_FORMATS)}, got "
                f"{self.output_format!r}"
            )
        if not isinstance(self.keep_columns, Mapping):
            object.__setattr__(self, "keep_columns", tuple(self.keep_columns))

    @property
    def batch_rows(self) -> int:
        """Rows per batch: the given number, else the engine's default."""
        if self.rows_per_batch is not None:
            return self.rows_per_batch
        return RAY_ROWS_PER_BATCH if self.engine == "ray" else LOCAL_ROWS_PER_BATCH

    @property
    def policy(self) -> ValuePolicy:
        """The value policy these options ask for."""
        from portanet.tables.values import ValuePolicy

        return ValuePolicy(self.allow_nan, self.on_error)

    def but(self, **changes: Any) -> InferOptions:
        """A copy with ``changes`` (field names; unknown names are refused)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(
                f"InferOptions has no fields {unknown}; expected some of {sorted(known)}"
            )
        return replace(self, **changes)


def keep_list(keep: tuple[str, ...] | Mapping[str, str] | Sequence[str]) -> list[str]:
    """The kept columns' input names (for readers; renames are applied by the writer)."""
    from portanet.tables.outputs import kept_names

    return list(kept_names(keep))
