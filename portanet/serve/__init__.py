"""``portanet serve``: an Open Inference Protocol (KServe V2, REST) server with dynamic batching.

>>> from portanet.serve import create_app
>>> app = create_app("models/pima_mlp.onnx")          # doctest: +SKIP
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)    # or mount it in your own ASGI app

Needs the ``[serve]`` extra (uvicorn, orjson, prometheus-client). Requests are checked by the
same code as ``Model.predict`` (dtype conversion, shapes, NaN/Inf refused with the row named),
so the server answers exactly what ``predict`` returns for the same rows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import portanet
from portanet.serve.app import ServeApp, ServeOptions
from portanet.serve.repository import ServedModel, load_models
from portanet.serve.server import ServerSpec, run_server, sources_of

__all__ = ["ServeApp", "ServeOptions", "ServedModel", "ServerSpec", "create_app", "load_models",
           "run_server", "serve"]

PathLike = str | os.PathLike[str]


def create_app(models: PathLike | Sequence[PathLike] | Mapping[str, portanet.Model], *,
               name: str | None = None, providers: str | Sequence[str] = "auto",
               threads: int | None = None, strict: bool = False, max_batch_size: int = 64,
               max_queue_delay_ms: float = 2.0, max_queue: int = 1024,
               max_body_mb: float = 64.0, allow_nan: bool = False) -> ServeApp:
    """Return the ASGI app serving ``models``.

    ``models``: an ``.onnx`` file, a folder (every ``.onnx`` in it, named by file stem), a list
    of those, or a mapping name → already loaded :class:`portanet.Model`. ``name`` renames a
    single model. ``max_batch_size`` rows at most per onnxruntime run (1 turns batching off),
    waiting at most ``max_queue_delay_ms`` for company; at most ``max_queue`` requests wait per
    model (503 beyond); bodies over ``max_body_mb`` MiB get 413; NaN/Inf inputs get 400 unless
    ``allow_nan``.
    """
    options = ServeOptions(max_batch_size=max_batch_size, max_queue_delay_ms=max_queue_delay_ms,
                           max_queue=max_queue, max_body_mb=max_body_mb, allow_nan=allow_nan)
    if isinstance(models, Mapping):
        served = [ServedModel(key, model, model.path) for key, model in models.items()]
    else:
        served = load_models(sources_of(models), name=name, providers=providers,
                             threads=threads, strict=strict)
    return ServeApp(served, options)


def serve(models: PathLike | Sequence[PathLike], *, host: str = "127.0.0.1", port: int = 8000,
          name: str | None = None, providers: str | Sequence[str] = "auto",
          threads: int | None = None, strict: bool = False, workers: int = 1,
          drain_timeout: float = 30.0, **options: object) -> int:
    """Serve ``models`` over HTTP until SIGTERM/SIGINT; drain, then return 0.

    ``options`` are :class:`ServeOptions` fields (``max_batch_size``, ``max_queue_delay_ms``,
    ``max_queue``, ``max_body_mb``, ``allow_nan``). ``port=0`` picks a free port (the startup
    line on stderr names it). ``workers`` processes share the socket, each batching on its own.
    """
    spec = ServerSpec(sources_of(models), name=name,
                      providers=providers if isinstance(providers, str) else tuple(providers),
                      threads=threads, strict=strict,
                      options=ServeOptions(**options))  # type: ignore[arg-type]
    return run_server(spec, host=host, port=port, workers=workers, drain_timeout=drain_timeout)
