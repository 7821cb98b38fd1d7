"""``portanet report``: one self-contained HTML page a person reads to decide whether to ship a
model — its interface and provenance, the parity gate, training, optimization and speed.

Everything comes from the ONNX file's portanet metadata (and an optional ``portanet bench
--json`` file). Styles and charts are inline (SVG with text as paths), and a Content Security
Policy forbids any request, so the page opens from disk with no network. Runtime side: no
TensorFlow; matplotlib and Jinja2 (autoescaping every value from the model file) are the
``report`` extra.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from portanet import __version__
from portanet import schema as meta
from portanet.errors import InputError
from portanet.runtime import load

#: Metadata key of the optimization lineage (written by ``portanet optimize``).
LINEAGE = "portanet.lineage"


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _opset(path: Path, tools: dict[str, Any]) -> Any:
    if tools.get("opset"):
        return tools["opset"]
    try:
        import onnx
    except ImportError:
        return None
    proto = onnx.load(str(path), load_external_data=False)
    return ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in proto.opset_import)


def read_bench(
    path: str | os.PathLike[str], model: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """A ``portanet bench --json`` file, checked for what the report draws and, with
    ``model``, that it timed that very file (its recorded sha256)."""
    source = Path(path)
    try:
        data = json.loads(source.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{source}: no such file (expected portanet bench --json output)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{source}: expected the JSON that portanet bench writes, got unreadable text ({exc})"
        ) from exc
    rows = data.get("onnx") if isinstance(data, dict) else None
    keys = ("batch", "p50_ms", "p90_ms", "p99_ms", "rows_per_s")
    if (
        not isinstance(rows, list)
        or not rows
        or not all(isinstance(r, dict) and all(k in r for k in keys) for r in rows)
    ):
        raise InputError(
            f"{source}: expected a bench report with an 'onnx' list of rows "
            f"holding {', '.join(keys)}, got {str(data)[:80]!r}"
        )
    if model is not None:
        want = _sha256(Path(model))
        got = data.get("model_sha256")
        if got != want:
            raise InputError(
                f"{source}: expected a bench of {Path(model).name} (sha256 {want[:16]}…), got "
                + (
                    f"one of another model ({data.get('model')}, sha256 {str(got)[:16]}…)"
                    if got
                    else "a bench that records no model sha256 (made by an older portanet)"
                )
                + f"; run portanet bench {Path(model).name} --json > {source.name} again"
            )
    return data


def report_context(
    model: str | os.PathLike[str], bench: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything the page shows, as plain data (charts as SVG strings)."""
    from portanet.report import charts

    path = Path(model)
    runtime = load(path, providers="cpu")
    md = runtime.metadata
    schema = runtime.schema
    tools = md.get(meta.TOOLS)
    tools = tools if isinstance(tools, dict) else {}
    parity = md.get(meta.PARITY) if isinstance(md.get(meta.PARITY), dict) else None
    metrics = md.get(meta.METRICS) if isinstance(md.get(meta.METRICS), dict) else None
    lineage = _json_value(md.get(LINEAGE))
    lineage = lineage if isinstance(lineage, dict) else None
    svg: dict[str, Any] = {
        "parity": [],
        "layerwise": None,
        "training": None,
        "candidates": None,
        "optimized": [],
        "bench": None,
    }
    if parity and isinstance(parity.get("charts"), dict):
        for output in parity["charts"].get("outputs", []):
            svg["parity"].append(
                {
                    "name": output["name"],
                    "scatter": charts.to_svg(charts.scatter_figure(output)),
                    "histogram": charts.to_svg(charts.histogram_figure(output)),
                }
            )
        if parity["charts"].get("layerwise"):
            svg["layerwise"] = charts.to_svg(charts.layerwise_figure(parity["charts"]["layerwise"]))
    history = metrics.get("history") if metrics else None
    if isinstance(history, dict) and any(history.values()):
        svg["training"] = charts.to_svg(charts.learning_figure(history))
    if lineage:
        if lineage.get("candidates"):
            svg["candidates"] = charts.to_svg(charts.candidates_figure(lineage["candidates"]))
        for output in (lineage.get("charts") or {}).get("outputs", []):
            svg["optimized"].append(
                {
                    "name": output["name"],
                    "scatter": charts.to_svg(
                        charts.scatter_figure(output, reference="float32", candidate="optimized")
                    ),
                    "histogram": charts.to_svg(charts.histogram_figure(output)),
                }
            )
    if bench:
        svg["bench"] = charts.to_svg(charts.bench_figure(bench))
    source = md.get(meta.SOURCE) if isinstance(md.get(meta.SOURCE), dict) else None
    return {
        "title": path.name,
        "path": path.name,  # a page meant to be shared names the file, not this machine
        "sha256": _sha256(path),
        "size": path.stat().st_size,
        "schema": schema,
        "providers": runtime.providers,
        "opset": _opset(path, tools),
        "tools": tools,
        "source": source,
        "parity": parity,
        "metrics": metrics,
        "history": history,
        "lineage": lineage,
        # An optimized file (some transform applied) shows its own measured error first.
        "variant": bool(lineage and lineage.get("transforms") and lineage.get("proof")),
        "bench": bench,
        "portanet_version": md.get(meta.VERSION),
        "svg": svg,
        "generator": __version__,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _number(value: Any, digits: int = 3) -> str:
    """A figure for the page: general format, thousands separators for big integers."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.{digits}e}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.{digits}g}"
    return str(value)


def render(context: dict[str, Any]) -> str:
    """The page's HTML for a :func:`report_context`."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("portanet.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _number
    env.filters["mb"] = lambda b: f"{b / 1e6:.2f} MB" if b is not None else "–"
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.2f} %"
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
    return env.get_template("report.html.j2").render(**context)


def write_report(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    bench: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the report of ``model`` (default ``MODEL.report.html``) atomically; ``bench`` is a
    ``portanet bench --json`` file to include."""
    from portanet._files import refuse_overwrite, write_bytes

    path = Path(model)
    target = Path(output) if output else path.with_name(path.stem + ".report.html")
    refuse_overwrite({"--output": target}, {"MODEL": path, "--bench": bench})
    page = render(report_context(path, read_bench(bench, path) if bench else None))
    write_bytes(target, page.encode("utf-8"))
    return target
