"""How ``portanet export`` and ``portanet verify`` show the gate's report: the parity table, the
layerwise table, the pipeline parity table, JSON, and the hint that names the noise-floor mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from portanet.cli.app import err, out

if TYPE_CHECKING:  # rich.table is imported when a table is printed (keeps `infer` fast)
    from rich.table import Table


def parity_table(report: Any, title: str) -> Table:
    """The parity report as a table: one row per output (elements, errors, noise, flips)."""
    from rich.table import Table

    table = Table(title=title, show_edge=False)
    classifier = any(o.decisions is not None for o in report.outputs)
    columns = [
        "output",
        "elements",
        "max abs",
        "max rel",
        "noise",
        "over tol",
        *(["flips"] if classifier else []),
        "result",
    ]
    for column in columns:
        table.add_column(
            column,
            justify="left" if column in ("output", "result") else "right",
            no_wrap=column != "output",
        )
    for o in report.outputs:
        noise = "-" if o.noise_floor is None else f"{o.noise_floor:.2g}"
        verdict = (
            "[green]pass[/]"
            if o.passed and not o.violations
            else ("[yellow]noise[/]" if o.passed else "[red]FAIL[/]")
        )
        flips = (
            [f"{o.flips}/{o.decisions}" if o.decisions is not None else "-"] if classifier else []
        )
        table.add_row(
            escape(o.name),
            str(o.elements),
            f"{o.max_abs:.2g}",
            f"{o.max_rel:.2g}",
            noise,
            f"{o.violations}",
            *flips,
            verdict,
        )
    lines = [
        f"inputs: {escape(report.inputs_from)}",
        f"max rel is relative to max(|Keras|, atol); {report.tolerance_mode} mode"
        + (
            "; noise: beyond tolerance, within the noise floor (accepted)"
            if any(o.passed and o.violations for o in report.outputs)
            else ""
        ),
    ]
    if report.noise:
        methods = ", ".join(f"{m} {v:.3g}" for m, v in report.noise["methods"].items())
        missing = "; ".join(
            f"{m} not measured: {w}" for m, w in report.noise["unavailable"].items()
        )
        lines.append("noise floor: " + "; ".join(p for p in (methods, missing) if p))
    for o in report.outputs:
        if o.violations:
            place = f"{o.worst.row} ({report.where(o.worst.row)})" if o.worst else "?"
            lines.append(
                f"{escape(o.name)}: worst row {escape(place)}, element "
                f"{list(o.worst.element) if o.worst else []}: Keras "
                f"{o.worst.reference:.6g} vs ONNX {o.worst.candidate:.6g}; "
                f"{escape(o.verdict())}"
            )
    table.caption = "\n".join(lines)
    return table


def layerwise_table(layerwise: Any, title: str) -> Table:
    """The layerwise comparison as a table: one row per Keras layer, in graph order."""
    from rich.table import Table

    table = Table(title=title, show_edge=False)
    for column in (
        "#",
        "layer",
        "class",
        "ONNX tensor",
        "max abs",
        "noise",
        "out of tol",
        "result",
    ):
        number = column in ("#", "max abs", "noise", "out of tol")
        table.add_column(
            column, justify="right" if number else "left", no_wrap=number, overflow="fold"
        )
    start = layerwise.first_beyond_noise or layerwise.first_failure
    for row in layerwise.rows:
        name = escape(row.layer) + (
            f" [dim](+ fused {escape(', '.join(row.fused))})[/]" if row.fused else ""
        )
        verdict = (
            "[green]pass[/]"
            if row.passed
            else ("[yellow]within noise[/]" if not row.beyond_noise else "[red]FAIL[/]")
        )
        if row is start:
            verdict += " [bold]← starts here[/]"
        table.add_row(
            str(row.index),
            name,
            escape(row.class_name),
            escape(row.tensor),
            f"{row.result.max_abs:.2g}",
            "-" if row.noise is None else f"{row.noise:.2g}",
            f"{row.result.violations}/{row.result.elements}",
            verdict,
        )
    table.caption = escape(layerwise.summary())
    return table


def print_reports(report: Any, title: str) -> None:
    """Print the parity table, and the layerwise one when the report has it."""
    out.print(parity_table(report, title))
    if report.layerwise is not None:
        out.print(
            layerwise_table(report.layerwise, "layerwise: Keras layer vs ONNX tensor (graph order)")
        )


def show_pipeline(report: Any, as_json: bool) -> None:
    """The pipeline parity report: as JSON on stdout, or a table per file and a summary."""
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(title="pipeline parity: author's pipeline + Keras vs portanet + ONNX")
    for column in ("file", "input max abs", "output max abs", "top-1", "agrees"):
        table.add_column(column)
    for f in report.files:
        table.add_row(
            escape(Path(f.file).name),
            f"{f.input_max_abs:.3g}",
            f"{f.output_max_abs:.3g}",
            f"{f.keras_top1} / {f.onnx_top1}",
            "yes" if f.agrees else "[red]NO[/]",
        )
    out.print(table)
    out.print(
        f"recipe: {escape(report.recipe)}\n{len(report.files)} files, top-1 agreement "
        f"{report.agreement:.1%}, max abs {report.max_abs:.3g} (input {report.input_max_abs:.3g})",
        highlight=False,
        soft_wrap=True,
    )


def hint_noise_floor(report: Any) -> None:
    """Name the flag when a strict failure is the model's own float32 sensitivity only (the
    library's message names no flag)."""
    failures = report.failures
    if (
        report.tolerance_mode == "strict"
        and failures
        and all(o.noise_floor is not None and o.unexplained == 0 for o in failures)
    ):
        err.print(
            "hint: every error out of tolerance is within the model's own float32 noise; "
            "--tolerance-mode noise-floor accepts it",
            highlight=False,
            soft_wrap=True,
        )


def show(report: Any, as_json: bool, title: str) -> None:
    """The report of ``portanet verify``: as JSON on stdout, or as tables."""
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        print_reports(report, title)
