"""``portanet inspect`` and ``portanet doctor``: what a model file and this machine offer."""

from __future__ import annotations

import json
import sys

import typer
from rich.text import Text

from portanet.cli.app import app, err, guarded, out
from portanet.cli.options import AsJson, OnnxModel, Sha256


@app.command(epilog="Example: portanet doctor --json")
@guarded
def doctor(as_json: AsJson = False) -> None:
    """Show which onnxruntime is installed, its providers, GPUs and CPUs; exit 1 on a conflict."""
    from portanet.runtime.doctor import environment_report

    report = environment_report()
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        for key, value in report.items():
            if key != "problems":
                out.print(Text.assemble((f"{key}: ", "bold"), str(value)))
        for problem in report["problems"]:
            err.print(Text.assemble(("problem: ", "bold yellow"), problem))
        if not report["problems"]:
            out.print("no problems found")
    if report["problems"]:
        raise typer.Exit(1)


@app.command(epilog="Example: portanet inspect model.onnx --json")
@guarded
def inspect(model: OnnxModel, as_json: AsJson = False, sha256: Sha256 = None) -> None:
    """Show an ONNX model's inputs, outputs, opset, checksums and portanet metadata."""
    from portanet.runtime.inspect import describe, summary

    info = describe(model, sha256=sha256)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    from rich.table import Table  # only when printing (keeps other commands' start fast)

    table = Table(title=f"{model}")
    for column in ("kind", "name", "shape", "dtype"):
        table.add_column(column)
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            table.add_row(kind[:-1], t["name"], str(t["shape"]), t["dtype"])
    out.print(table)
    for key in ("opset", "producer", "sha256", "source_sha256", "providers", "task"):
        out.print(Text.assemble((f"{key}: ", "bold"), str(info[key])))
    if info.get("variant"):
        out.print(Text.assemble(("this file: ", "bold"), info["variant"]), soft_wrap=True)
    if info["labels"]:
        out.print(Text.assemble(("labels: ", "bold"), ", ".join(info["labels"])), soft_wrap=True)
    for name, text in info["images"].items():
        out.print(Text.assemble((f"image input {name}: ", "bold"), text), soft_wrap=True)
    for name, size in info["vocabulary"].items():
        out.print(Text.assemble((f"vocabulary of {name}: ", "bold"), f"{size} ids (0..{size - 1})"))
    for label, text in summary(info):  # readable; --json keeps everything
        out.print(Text.assemble((f"{label}: ", "bold"), text), soft_wrap=True, highlight=False)
