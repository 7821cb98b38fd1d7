"""Build the ASGI app from model files (or loaded models) and the serving options."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import portanet
from portanet.serve.app import ServeApp
from portanet.serve.options import ServeOptions
from portanet.serve.repository import ServedModel, load_models

PathLike = str | os.PathLike[str]


def sources_of(model: PathLike | Sequence[PathLike]) -> tuple[str, ...]:
    """Normalise one path or several into a tuple of strings."""
    if isinstance(model, (str, os.PathLike)):
        return (str(Path(model)),)
    return tuple(str(Path(m)) for m in model)


def create_app(
    models: PathLike | Sequence[PathLike] | Mapping[str, portanet.Model],
    options: ServeOptions | None = None,
    **changes: Any,
) -> ServeApp:
    """Return the ASGI app serving ``models`` with ``options`` (:class:`ServeOptions`).

    ``models``: an ``.onnx`` file, a folder (every ``.onnx`` in it, named by file stem), a list
    of those, or a mapping name → already loaded :class:`portanet.Model`. ``changes`` are
    :class:`ServeOptions` fields overriding ``options`` (``create_app(path, max_batch_size=8)``).
    """
    options = dataclasses.replace(options or ServeOptions(), **changes)
    if isinstance(models, Mapping):
        served = [ServedModel(key, model, Path(model.path or key)) for key, model in models.items()]
    else:
        from portanet.runtime.providers import usable_cpus

        sessions, threads = options.session_layout(usable_cpus())
        served = load_models(
            sources_of(models),
            name=options.name,
            providers=options.providers,
            threads=threads,
            strict=options.strict,
            sessions=sessions,
        )
    return ServeApp(served, options)
