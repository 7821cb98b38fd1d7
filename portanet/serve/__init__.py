"""``portanet serve``: an Open Inference Protocol (KServe V2, REST) server with dynamic batching.

>>> from portanet.serve import ServeOptions, create_app
>>> app = create_app("models/pima_mlp.onnx", ServeOptions(max_batch_size=8))  # doctest: +SKIP
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)    # or mount it in your own ASGI app

Needs the ``[serve]`` extra (uvicorn, orjson, prometheus-client). Requests are checked by the
same code as ``Model.predict`` (dtype conversion, shapes, NaN/Inf refused with the row named),
so the server answers exactly what ``predict`` returns for the same rows.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from portanet.serve.options import ServeOptions

if TYPE_CHECKING:
    from portanet.serve.app import ServeApp
    from portanet.serve.factory import create_app
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
#: Imported on first use, so ``portanet.serve.options`` (the CLI's defaults) stays light.
_LAZY = {
    "ServeApp": "portanet.serve.app",
    "create_app": "portanet.serve.factory",
    "ServedModel": "portanet.serve.repository",
    "load_models": "portanet.serve.repository",
    "ServerSpec": "portanet.serve.server",
    "run_server": "portanet.serve.server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'portanet.serve' has no attribute {name!r}")


PathLike = str | os.PathLike[str]


def serve(
    models: PathLike | Sequence[PathLike],
    options: ServeOptions | None = None,
    **changes: Any,
) -> int:
    """Serve ``models`` over HTTP until SIGTERM/SIGINT; drain, then return the exit status.

    ``options`` (:class:`ServeOptions`, the ``portanet serve`` flags) with ``changes`` applied:
    ``serve("model.onnx", port=0, workers=2)``. ``port=0`` picks a free port (the startup line
    on stderr names it). ``workers`` processes share the socket, each batching on its own, and
    are restarted when they die.
    """
    from portanet.serve.factory import sources_of
    from portanet.serve.server import ServerSpec, run_server

    options = dataclasses.replace(options or ServeOptions(), **changes)
    return run_server(ServerSpec(sources_of(models), options))
