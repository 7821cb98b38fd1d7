"""``portanet infer --engine ray``: parse the Ray options, call :func:`portanet.scale.infer_ray`
(imported here, inside the call, so that ``portanet --help`` and the local engine never import
Ray), and print what was done."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

from rich.console import Console

from portanet.errors import InputError

err = Console(stderr=True)


def parse_workers(text: Optional[str]) -> int | tuple[int, int] | None:
    """``N`` or ``MIN,MAX`` as given to ``--workers``."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise InputError(f"--workers: expected N or MIN,MAX (positive integers), got {text!r}")
    if len(parts) == 1:
        return int(parts[0])
    return int(parts[0]), int(parts[1])


def infer_on_ray(engine: str, model: Path, inputs: list[str], output: Optional[Path],
                 keep_columns: Optional[str], provider: str, threads: Optional[int],
                 allow_nan: bool, sha256: Optional[str], address: Optional[str],
                 workers: Optional[str], cpus_per_worker: Optional[float],
                 rows_per_batch: int, on_error: str, output_format: str) -> None:
    """The body of ``portanet infer`` for ``--engine ray``."""
    if engine != "ray":
        raise InputError(f"--engine: expected local or ray, got {engine!r}")
    if importlib.util.find_spec("ray") is None:
        raise InputError("--engine ray: expected Ray to be installed, got no 'ray' module; "
                         "install it with pip install 'portanet[ray]'")
    if output is None:
        raise InputError("--engine ray writes a folder of files: expected --output FOLDER, "
                         "got none")
    if "-" in inputs:
        raise InputError("--engine ray reads files, folders or URIs, got - (stdin); use the "
                         "local engine for stdin")
    if on_error not in ("fail", "skip"):
        raise InputError(f"--on-error: expected fail or skip, got {on_error!r}")
    keep = [c.strip() for c in keep_columns.split(",") if c.strip()] if keep_columns else []
    from portanet.scale import infer_ray

    result = infer_ray(model, inputs, str(output), address=address, fmt=output_format,
                       keep_columns=keep, workers=parse_workers(workers),
                       cpus_per_worker=cpus_per_worker, rows_per_batch=rows_per_batch,
                       on_error=on_error, allow_nan=allow_nan,
                       providers="cpu" if provider == "auto" else provider, threads=threads,
                       sha256=sha256)
    rate = result.rows / result.seconds if result.seconds else 0.0
    pool = result.workers
    size = (f"{pool.min_size}" if pool.min_size == pool.max_size
            else f"{pool.min_size}-{pool.max_size}")
    err.print(f"wrote {result.rows} predictions from {result.files} files to {result.output} "
              f"({result.seconds:.2f} s, {rate:,.0f} rows/s, {size} workers x {pool.cpus:g} "
              f"CPU)", highlight=False, soft_wrap=True)
    if result.rejected:
        err.print(f"skipped {result.rejected} rows with bad values: written with their reasons "
                  f"to {result.rejected_dir}", highlight=False, soft_wrap=True)
