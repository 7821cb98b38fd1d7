"""Build the ASGI app from model files (or loaded models) and the serving options."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import portanet
from portanet.serve.app import ServeApp, ServeOptions
from portanet.serve.repository import ServedModel, load_models

PathLike = str | os.PathLike[str]


def sources_of(model: PathLike | Sequence[PathLike]) -> tuple[str, ...]:
    """Normalise one path or several into a tuple of strings."""
    if isinstance(model, (str, os.PathLike)):
        return (str(Path(model)),)
    return tuple(str(Path(m)) for m in model)


def create_app(
    models: PathLike | Sequence[PathLike] | Mapping[str, portanet.Model],
    *,
    name: str | None = None,
    providers: str | Sequence[str] = "auto",
    threads: int | None = None,
    strict: bool = False,
    max_batch_size: int = 64,
    max_queue_delay_ms: float = 2.0,
    max_queue: int = 1024,
    max_body_mb: float = 64.0,
    allow_nan: bool = False,
) -> ServeApp:
    """Return the ASGI app serving ``models``.

    ``models``: an ``.onnx`` file, a folder (every ``.onnx`` in it, named by file stem), a list
    of those, or a mapping name → already loaded :class:`portanet.Model`. ``name`` renames a
    single model. ``max_batch_size`` rows at most per onnxruntime run (1 turns batching off),
    waiting at most ``max_queue_delay_ms`` for company; at most ``max_queue`` requests wait per
    model (503 beyond); bodies over ``max_body_mb`` MiB get 413; NaN/Inf inputs get 400 unless
    ``allow_nan``.
    """
    options = ServeOptions(
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        max_queue=max_queue,
        max_body_mb=max_body_mb,
        allow_nan=allow_nan,
    )
    if isinstance(models, Mapping):
        served = [ServedModel(key, model, model.path) for key, model in models.items()]
    else:
        served = load_models(
            sources_of(models), name=name, providers=providers, threads=threads, strict=strict
        )
    return ServeApp(served, options)
