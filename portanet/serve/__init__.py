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
from collections.abc import Sequence

from portanet.serve.app import ServeApp, ServeOptions
from portanet.serve.factory import create_app, sources_of
from portanet.serve.repository import ServedModel, load_models
from portanet.serve.server import ServerSpec, run_server

__all__ = [
    "ServeApp",
    "ServeOptions",
    "ServedModel",
    "ServerSpec",
    "create_app",
    "load_models",
    "run_server",
    "serve",
]

PathLike = str | os.PathLike[str]


def serve(
    models: PathLike | Sequence[PathLike],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    providers: str | Sequence[str] = "auto",
    threads: int | None = None,
    strict: bool = False,
    workers: int = 1,
    drain_timeout: float = 30.0,
    **options: object,
) -> int:
    """Serve ``models`` over HTTP until SIGTERM/SIGINT; drain, then return 0.

    ``options`` are :class:`ServeOptions` fields (``max_batch_size``, ``max_queue_delay_ms``,
    ``max_queue``, ``max_body_mb``, ``allow_nan``). ``port=0`` picks a free port (the startup
    line on stderr names it). ``workers`` processes share the socket, each batching on its own.
    """
    spec = ServerSpec(
        sources_of(models),
        name=name,
        providers=providers if isinstance(providers, str) else tuple(providers),
        threads=threads,
        strict=strict,
        options=ServeOptions(**options),  # type: ignore[arg-type]  # checked by the dataclass
    )
    return run_server(spec, host=host, port=port, workers=workers, drain_timeout=drain_timeout)
