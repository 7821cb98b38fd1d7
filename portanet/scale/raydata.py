"""The Ray Data path of ``infer_ray``: used with ``--workers`` (an actor pool) and for fewer
input files than CPUs holding more than ``SPLIT_BYTES``, where Ray Data spreads one file's
blocks over the CPUs. Read tasks (:func:`~portanet.scale.sources.files_datasource`), prediction
in fused tasks or actors (:func:`~portanet.scale.predictor.predict_dataset`), Ray Data's writers;
a :class:`~portanet.scale.ledger.Ledger` actor counts the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from portanet.scale.cluster import quiet_ray_data
from portanet.scale.predictor import Workers, predict_dataset
from portanet.scale.sources import files_datasource
from portanet.tables.options import InferOptions
from portanet.tables.types import Columns


def run_dataset(
    model_bytes: bytes,
    files: Sequence[Any],
    columns: Columns,
    options: InferOptions,
    pool: Workers,
    settings: dict[str, Any],
    staging: str,
    ledger: Any,
) -> tuple[int, int]:
    """Predict ``files`` into ``staging`` through Ray Data; (rows predicted, rows rejected)
    as counted by ``ledger`` (a :class:`~portanet.scale.ledger.Ledger` actor)."""
    import ray

    if not options.debug:
        quiet_ray_data()
    dataset = ray.data.read_datasource(
        files_datasource(files, columns, options.batch_rows, ledger, options.allow_nan)
    )
    predicted = predict_dataset(
        dataset,
        ray.put(model_bytes),
        keep_columns=settings["keep"],
        workers=pool,
        rows_per_batch=options.batch_rows,
        on_error=options.on_error,
        allow_nan=options.allow_nan,
        providers=options.providers,
        threads=options.threads,
        rejected_dir=settings["rejected_dir"],
        files=settings["files"],
        ledger=ledger,
        positional=options.positional,
        fused=options.workers is None and options.cpus_per_worker is None,
    )
    write(predicted, staging, options.output_format)
    rows, rejected = ray.get(cast(Any, ledger).totals.remote())
    return rows, rejected


def write(dataset: Any, location: str, fmt: str) -> None:
    """Write ``dataset`` into the folder ``location`` as ``fmt`` files (``.jsonl`` for JSONL)."""
    from ray.data.datasource import FilenameProvider

    if fmt == "parquet":
        dataset.write_parquet(location)
    elif fmt == "csv":
        dataset.write_csv(location)
    else:  # Ray writes JSON Lines: name the files for what they hold (.jsonl, not .json)
        dataset.write_json(location, filename_provider=FilenameProvider(file_format="jsonl"))
