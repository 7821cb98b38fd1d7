"""``portanet serve``: the Open Inference Protocol server (the ``[serve]`` extra).

The server package is imported inside the command, so ``portanet --help`` stays fast and needs
no server dependencies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from portanet.cli.app import app, guarded
from portanet.cli.options import (
    AllowNan,
    Provider,
    RequireProvider,
    Threads,
    providers_arg,
)


@app.command(name="serve", epilog="Example: portanet serve model.onnx --port 8080")
@guarded
def serve_command(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            show_default=False,
            help="An .onnx file, or a folder: every .onnx in it is served.",
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, help="Port to listen on (0: any free port).")] = 8000,
    name: Annotated[
        str | None, typer.Option(help="Model name in the URLs (default: the file stem).")
    ] = None,
    max_batch_size: Annotated[
        int,
        typer.Option(
            min=1, help="Most rows per onnxruntime run when coalescing requests (1: no batching)."
        ),
    ] = 64,
    max_queue_delay_ms: Annotated[
        float, typer.Option(min=0, help="Longest a request waits for others to batch with.")
    ] = 2.0,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Most requests waiting per model; more get 503.")
    ] = 1024,
    provider: Provider = None,
    require_provider: RequireProvider = False,
    threads: Threads = None,
    max_body_mb: Annotated[
        float, typer.Option(min=0, help="Largest request body in MiB; larger ones get 413.")
    ] = 64.0,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes sharing the port (each loads the models).")
    ] = 1,
    allow_nan: AllowNan = False,
    drain_timeout: Annotated[
        float,
        typer.Option(min=0, help="Seconds SIGTERM waits for in-flight requests before exiting."),
    ] = 30.0,
) -> None:
    """Serve ONNX models over the Open Inference Protocol (KServe V2 REST) with batching."""
    try:
        from portanet.serve import serve
    except ImportError as exc:
        from portanet.errors import InputError

        raise InputError(
            f"portanet serve: expected the server dependencies, got {exc} "
            f"(install them with: pip install 'portanet[serve]')"
        ) from None

    status = serve(
        model,
        host=host,
        port=port,
        name=name,
        providers=providers_arg(provider),
        strict=require_provider,
        threads=threads,
        workers=workers,
        drain_timeout=drain_timeout,
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        max_queue=max_queue,
        max_body_mb=max_body_mb,
        allow_nan=allow_nan,
    )
    if status:
        raise typer.Exit(status)
