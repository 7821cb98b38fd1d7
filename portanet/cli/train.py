"""``portanet train``: the reference network."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from portanet.cli.app import app, err, guarded, out


@app.command(epilog="Example: portanet train --epochs 200 --output models/pima_mlp.h5")
@guarded
def train(
    data: Annotated[Path | None, typer.Option(help="Pima-style CSV (default: bundled).")] = None,
    epochs: Annotated[
        int, typer.Option(min=1, help="Most epochs (early stopping may end sooner).")
    ] = 200,
    seed: Annotated[int, typer.Option(help="Seed for the split, weights and shuffling.")] = 7,
    output: Annotated[Path, typer.Option(help="Where to save the .h5 model.")] = Path(
        "models/pima_mlp.h5"
    ),
) -> None:
    """Train the reference Pima network and save it as .h5."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from portanet.reference.train import train_pima

    with Progress(
        TextColumn("training"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}"),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        task = progress.add_task("train", total=epochs, loss="")

        def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
            loss = f"loss {logs.get('loss', 0):.4f} val_loss {logs.get('val_loss', 0):.4f}"
            progress.update(task, completed=epoch, loss=loss)

        result = train_pima(output, data=data, epochs=epochs, seed=seed, on_epoch=on_epoch)
        progress.update(task, total=result.epochs_run, completed=result.epochs_run)
    from rich.table import Table  # only when printing (keeps other commands' start fast)

    table = Table(
        title=f"{result.path} (seed {seed}, {result.epochs_run} epochs, best weights kept)"
    )
    for column in ("split", "rows", "accuracy", "ROC AUC", "loss"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split in ("validation", "test"):
        m = result.metrics[split]
        table.add_row(
            split, str(m["rows"]), f"{m['accuracy']:.3f}", f"{m['roc_auc']:.3f}", f"{m['loss']:.4f}"
        )
    out.print(table)
