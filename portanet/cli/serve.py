"""``portanet serve``: the Open Inference Protocol server (the ``[serve]`` extra).

The server package is imported inside the command, so ``portanet --help`` stays fast and needs
no server dependencies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from portanet.cli.app import app, guarded, state
from portanet.cli.options import (
    AllowNan,
    Provider,
    RequireProvider,
    Threads,
    providers_arg,
)
from portanet.serve.options import ServeOptions

#: The defaults, from the one place they are defined (a light module: no server imports).
_D = ServeOptions()


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
    host: Annotated[str, typer.Option(help="Address to listen on.")] = _D.host,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = _D.port,
    name: Annotated[
        str | None, typer.Option(help="Model name in the URLs (default: the file stem).")
    ] = _D.name,
    max_batch_size: Annotated[
        int,
        typer.Option(
            min=1, help="Most rows per onnxruntime run when coalescing requests (1: no batching)."
        ),
    ] = _D.max_batch_size,
    max_queue_delay_ms: Annotated[
        float, typer.Option(min=0, help="Longest a request waits for others to batch with.")
    ] = _D.max_queue_delay_ms,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Most requests waiting per model; more get 503.")
    ] = _D.max_queue,
    provider: Provider = None,
    require_provider: RequireProvider = False,
    threads: Threads = None,
    sessions: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="onnxruntime sessions per model running batches side by side "
            "(default: one single-threaded session per CPU, unless --threads is given).",
        ),
    ] = _D.sessions,
    max_body_mb: Annotated[
        float,
        typer.Option(
            help="Largest request body in MiB (> 0), also after decompression; larger get 413."
        ),
    ] = _D.max_body_mb,
    max_elements: Annotated[
        int,
        typer.Option(min=1, help="Most tensor elements one request may declare; more get 413."),
    ] = _D.max_elements,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Server processes sharing the port (each loads the models; restarted)."
        ),
    ] = _D.workers,
    allow_nan: AllowNan = False,
    drain_timeout: Annotated[
        float,
        typer.Option(min=0, help="Seconds SIGTERM may take in total (drain, then exit)."),
    ] = _D.drain_timeout,
    read_timeout: Annotated[
        float,
        typer.Option(help="Seconds a client may take to send headers, or between body chunks."),
    ] = _D.read_timeout,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="Also serve the KServe V2 gRPC protocol on this port (0: any)."
        ),
    ] = _D.grpc_port,
    max_connections: Annotated[
        int | None,
        typer.Option(
            min=1, help="Open connections per worker; more get 503 (default: file limit)."
        ),
    ] = _D.max_connections,
) -> None:
    """Serve ONNX models over the Open Inference Protocol (KServe V2 REST) with batching."""
    try:
        from portanet.serve import ServeOptions, serve
    except ImportError as exc:
        from portanet.errors import InputError

        raise InputError(
            f"portanet serve: expected the server dependencies, got {exc} "
            f"(install them with: pip install 'portanet[serve]')"
        ) from None

    options = ServeOptions(
        host=host,
        port=port,
        name=name,
        providers=chosen if isinstance(chosen := providers_arg(provider), str) else tuple(chosen),
        strict=require_provider,
        threads=threads,
        sessions=sessions,
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        max_queue=max_queue,
        max_body_mb=max_body_mb,
        max_elements=max_elements,
        allow_nan=allow_nan,
        workers=workers,
        drain_timeout=drain_timeout,
        read_timeout=read_timeout,
        max_connections=max_connections,
        grpc_port=grpc_port,
        debug=bool(state["debug"]),
    )
    status = serve(model, options)
    if status:
        raise typer.Exit(status)
