"""``infer_ray``: files in, a folder of predictions out, on a Ray cluster (the ``--engine ray``
path of ``portanet infer``).

The output is written to a staging folder and renamed into place only when every row has been
predicted (a remote URI, where renames are not atomic, is written in place and removed on
failure); a ``_SUCCESS`` file marks a complete folder either way.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from portanet.errors import InputError, PortanetError
from portanet.runtime import load
from portanet.scale.cluster import check_address, is_client, ray_session
from portanet.scale.ledger import Ledger, rebuild
from portanet.scale.predictor import Workers
from portanet.scale.raydata import run_dataset
from portanet.scale.signals import Interrupted, stop_on_signals
from portanet.scale.sources import list_inputs
from portanet.scale.tasks import run_tasks
from portanet.tables.files import filesystem
from portanet.tables.options import InferOptions
from portanet.tables.readers import file_rows
from portanet.tables.types import Columns

SUCCESS_MARKER = "_SUCCESS"
#: Below this many input bytes in all, fewer files than CPUs still run as one task per file:
#: a file this small reads and predicts in well under a second on one core.
SPLIT_BYTES = 32 << 20


@dataclass
class RayInferResult:
    """What a Ray inference run did."""

    rows: int  # rows predicted and written
    rejected: int  # rows with bad values written to ``rejected_dir`` (skip mode)
    files: int  # input files read
    seconds: float  # the whole run: connect, read, predict, write, commit
    output: str  # the output folder
    rejected_dir: str | None  # where the rejected rows are (None when there are none)
    workers: Workers  # the actor pool used


def _is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def _local_path(location: str) -> Path:
    return Path(location[len("file://") :] if location.startswith("file://") else location)


def _must_be_new(location: str, what: str) -> None:
    import pyarrow.fs as pafs

    fs, inner, _ = filesystem(location)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.File:
        raise InputError(f"{location}: expected a folder for the {what}, got a file")
    if info.type == pafs.FileType.Directory and fs.get_file_info(
        pafs.FileSelector(inner, recursive=False)
    ):
        raise InputError(
            f"{location}: expected a new or empty folder for the {what}, got one with files in it"
        )


def _remove(location: str) -> None:
    fs, inner, _ = filesystem(location)
    with contextlib.suppress(OSError):  # FileNotFoundError included
        fs.delete_dir(inner)


def _resolve_workers(
    workers: Workers | int | tuple[int, int] | None,
    cpus_per_worker: float | None,
    cluster_cpus: float,
) -> Workers:
    """The actor pool: by default half the cluster's CPUs, in shares of one CPU (half a CPU
    below 4 CPUs), so that Ray Data's read and write tasks always keep CPUs of their own."""
    if isinstance(workers, Workers):
        pool = workers
    else:
        cpus = cpus_per_worker or (1.0 if cluster_cpus >= 4 else 0.5)
        if workers is None:
            size = max(1, int(cluster_cpus / 2 / cpus))
            pool = Workers(size, size, cpus)
        elif isinstance(workers, int):
            pool = Workers(workers, workers, cpus)
        else:
            pool = Workers(int(workers[0]), int(workers[1]), cpus)
    if pool.min_size * pool.cpus >= cluster_cpus:
        raise InputError(
            f"workers: {pool.min_size} x {pool.cpus:g} CPUs would take all "
            f"{cluster_cpus:g} CPUs of the cluster and leave none for reading and "
            f"writing (Ray Data would wait forever); expected fewer workers or "
            f"smaller CPU shares"
        )
    return pool


def _portanet_cause(error: BaseException) -> PortanetError | None:
    """The PortanetError that a Ray task or actor raised, found inside Ray's wrappers (which
    may themselves subclass it, with the remote traceback as their text)."""
    from ray.exceptions import RayError

    stack, seen = [error], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, PortanetError) and not isinstance(current, RayError):
            return current
        for link in (getattr(current, "cause", None), current.__cause__, current.__context__):
            if isinstance(link, BaseException):
                stack.append(link)
    return None


def refuse_images(inputs: Sequence[str]) -> None:
    """Image files (or a glob of them) are refused before anything starts: the Ray engine
    reads tables; the local engine predicts images with the recipe recorded at export."""
    from portanet.tables.images import IMAGE_SUFFIXES

    for given in inputs:
        suffix = os.path.splitext(given.rstrip("/"))[1].lower()
        if suffix in IMAGE_SUFFIXES:
            raise InputError(
                f"{given}: the Ray engine reads tables (Parquet, CSV, TSV, JSONL, JSON), got "
                f"images; predict images with the local engine: drop --engine ray "
                f"(portanet infer MODEL {given} --output preds.csv)"
            )


def check_inputs(files: Sequence[Any], columns: Columns) -> None:
    """Read the head of the first input file here, before any cluster starts: a missing
    feature or kept column (``--keep-columns nosuch``) or an unreadable format is refused in
    a second, not after the cluster has started."""
    if files:
        names: list[str] = []
        next(iter(file_rows(files[0], columns, 1, names)), None)


def infer_ray(
    model: str | os.PathLike[str],
    inputs: Sequence[str],
    output: str,
    options: InferOptions | None = None,
    **changes: Any,
) -> RayInferResult:
    """Predict every row of ``inputs`` on a Ray cluster into the folder ``output``.

    ``inputs``: CSV/TSV, Parquet, JSONL or JSON files, folders or globs, local or any pyarrow
    URI (the local engine's inputs, less .npy/.npz and images). Without ``workers`` every
    file is one Ray task (:mod:`portanet.scale.tasks`); with them, or with fewer files than
    CPUs holding more than ``SPLIT_BYTES``, Ray Data runs (:mod:`portanet.scale.raydata`).
    ``options`` (:class:`InferOptions`, with ``changes`` applied): ``address`` ``None`` starts
    a private local cluster for this call, else ``auto``, ``HOST:PORT`` or
    ``ray://HOST:PORT`` (Ray Client); ``output_format`` ``parquet``, ``csv`` or ``jsonl``;
    ``workers`` an actor count or ``(min, max)``; ``on_error="skip"`` writes bad rows with
    their reasons to ``rejected_dir`` (default ``<output>.rejected``) instead of failing. Bad
    values are judged by the local engine's policy (:mod:`portanet.tables.values`). Raises
    :class:`InputError` for a bad value (naming the file and line), a missing input or an
    unreachable cluster, leaving no output folder behind; every check that needs no cluster
    runs before one is started or reached.
    """
    started = time.perf_counter()
    options = (options or InferOptions(engine="ray")).but(engine="ray", **changes)
    on_error = options.on_error
    check_address(options.address)
    if is_client(options.address) and (options.workers or options.cpus_per_worker):
        raise InputError(
            f"--workers/--cpus-per-worker with --address {options.address}: the actor pool "
            f"runs on Ray Data, which does not run under Ray Client (ray://); expected "
            f"either no --workers (one task per input file) or the head's GCS address "
            f"--address HOST:6379"
        )
    refuse_images(inputs)
    checked = load(model, sha256=options.sha256, threads=1)
    specs = checked.schema.inputs
    if any(spec.rank == 4 for spec in specs):
        raise InputError(
            f"{model}: the Ray engine predicts table models (one 2-D input), got the image "
            f"input {[(s.name, s.shape) for s in specs]}; image models run on the local "
            f"engine: drop --engine ray (portanet infer MODEL IMAGES --output preds.csv)"
        )
    if len(specs) != 1 or specs[0].rank != 2 or not isinstance(specs[0].shape[1], int):
        raise InputError(
            f"{model}: the Ray engine expects one 2-D input of fixed width, got "
            f"inputs {[(s.name, s.shape) for s in specs]}"
        )
    keep_columns = list(options.keep_columns)
    if isinstance(options.keep_columns, dict) or any("=" in k for k in keep_columns):
        raise InputError(
            f"--keep-columns {keep_columns}: the Ray engine copies columns under their own "
            f"names; expected NAME without =NEW"
        )
    model_bytes = Path(model).read_bytes()
    spec = specs[0]
    columns = Columns(
        checked.feature_names,
        cast(int, spec.shape[1]),  # a table model: checked fixed
        tuple(keep_columns),
        spec.numpy_dtype,
        positional=options.positional,
    )
    files = list_inputs(inputs)
    check_inputs(files, columns)
    output = str(output)
    rejected_dir = str(options.rejected_dir or output.rstrip("/") + ".rejected")
    _must_be_new(output, "predictions")
    if on_error == "skip":
        _must_be_new(rejected_dir, "rejected rows")
    if isinstance(options.workers, tuple | int) or options.cpus_per_worker:
        # a pool that cannot exist is refused before the cluster starts
        _resolve_workers(options.workers, options.cpus_per_worker, float("inf"))
    staging = output
    if _is_local(output):
        target = _local_path(output).absolute()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = str(target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:12]}")
    # The whole run, publishing included, answers SIGTERM/SIGINT: a signal between the
    # session's end and the commit must not leave the staging folder behind either.
    with stop_on_signals() as signals:
        try:
            rows, rejected, pool = _run(
                model_bytes, files, columns, options, staging, rejected_dir, keep_columns
            )
            signals.check()
        except BaseException:
            # Again once the session is closed: a task still running when the run failed has
            # ended with the job, and nothing it wrote may remain.
            _remove(staging)
            if on_error == "skip":
                _remove(rejected_dir)
            raise
        with signals.committing():
            _commit(staging, output)
    if on_error == "skip" and rejected == 0:
        _remove(rejected_dir)
    return RayInferResult(
        rows,
        rejected,
        len(files),
        time.perf_counter() - started,
        output,
        rejected_dir if rejected else None,
        pool,
    )


def _run(
    model_bytes: bytes,
    files: Sequence[Any],
    columns: Columns,
    options: InferOptions,
    staging: str,
    rejected_dir: str,
    keep_columns: Sequence[str],
) -> tuple[int, int, Workers]:
    """The run inside a Ray session: (rows predicted, rows rejected, the pool used)."""
    on_error, fmt, rows_per_batch = options.on_error, options.output_format, options.batch_rows
    with ray_session(options.address, debug=options.debug) as _:
        import ray

        cluster_cpus = float(ray.cluster_resources().get("CPU", 1))
        # No pool asked for: plain tasks, one per file, when there are files enough to keep
        # every CPU busy (or too few bytes to be worth splitting); else Ray Data's tasks
        # (which spread a file's blocks over the CPUs, fused with reading and writing).
        # --workers / --cpus-per-worker ask for Ray Data's actor pool.
        default = options.workers is None and options.cpus_per_worker is None
        per_file = default and (
            len(files) >= cluster_cpus
            or sum(f.size for f in files) <= SPLIT_BYTES
            or is_client(options.address)  # Ray Data does not run under Ray Client
        )
        pool = (
            Workers(max(1, int(cluster_cpus)), max(1, int(cluster_cpus)), 1.0)
            if default
            else _resolve_workers(options.workers, options.cpus_per_worker, cluster_cpus)
        )
        if on_error == "skip":
            fs, inner, _ = filesystem(rejected_dir)
            fs.create_dir(inner, recursive=True)
        settings = {
            "keep": tuple(keep_columns),
            "on_error": on_error,
            "allow_nan": options.allow_nan,
            "providers": options.providers,
            "threads": options.threads or 1,
            "files": tuple((f.path, f.row_word) for f in files),
            "rejected_dir": rejected_dir if on_error == "skip" else None,
            "ledger": None,
            "positional": options.positional,
        }
        # Ray Data's path counts rows (and keeps the first error) in a small actor.
        ledger = None if per_file else ray.remote(num_cpus=0)(Ledger).remote()
        try:
            if per_file:
                rows, rejected = run_tasks(
                    files,
                    columns,
                    rows_per_batch,
                    options.allow_nan,
                    ray.put(model_bytes),
                    settings,
                    staging,
                    fmt,
                )
            else:
                rows, rejected = run_dataset(
                    model_bytes, files, columns, options, pool, settings, staging, ledger
                )
        except BaseException as exc:
            _remove(staging)
            if on_error == "skip":
                _remove(rejected_dir)
            interrupted = _interruption(exc)
            if interrupted is not None:
                raise interrupted from None
            recorded = _recorded_failure(ledger) if ledger is not None else None
            cause = rebuild(recorded) if recorded else _portanet_cause(exc)
            if cause is not None:
                raise type(cause)(f"{cause}; nothing was written") from None
            raise
    return rows, rejected, pool


def _interruption(error: BaseException) -> Interrupted | None:
    """The :class:`Interrupted` behind ``error`` (a signal may land inside a Ray call, which
    then raises its own error with the interruption as its context)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Interrupted):
            return current
        current = current.__cause__ or current.__context__
    return None


def _recorded_failure(ledger: Any) -> Any:
    """The first PortanetError the read tasks or actors recorded, if the ledger still
    answers (an interrupted run may have lost it)."""
    import ray

    try:
        return ray.get(ledger.failure.remote(), timeout=10)
    except Exception:  # the cluster is going away: the exception in hand is the story
        return None


def _commit(staging: str, output: str) -> None:
    """Mark the folder complete and, for a local one, move it into place."""
    fs, inner, _ = filesystem(staging)
    fs.create_dir(inner, recursive=True)  # zero rows still give an (empty) folder
    with fs.open_output_stream(f"{inner.rstrip('/')}/{SUCCESS_MARKER}") as marker:
        marker.write(b"")
    if staging != output:
        target = _local_path(output).absolute()
        if target.is_dir():
            target.rmdir()  # checked empty before the run
        os.replace(staging, target)
